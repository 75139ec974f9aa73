"""A torchvision ResNet made fully convolutional: per-location logits for whole-slide maps.

Paper A trains one prediction per 224 px patch and runs the same ResNet50 without its global average
pool to get dense outputs. Here the classifier is a 1×1 convolution on the last feature map, so

* ``forward(x)`` gives dense logits ``(B, C, H / stride, W / stride)`` (used for maps), and
* ``patch_logits(x)`` gives ``(B, C)``, the spatial mean of those dense logits.

Because the classifier is linear, the mean of the dense logits equals the classifier applied to the
average-pooled features — a standard ResNet's patch prediction — so training per patch and mapping
densely are the same function of the input. ``output_stride=16`` dilates the last stage (paper A's
13×13-per-224 px map is this network with one more 2×2 pool); ``32`` is the plain ResNet.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torchvision import models

from monai_wsseg.networks.checkpoint import read_state_dict
from monai_wsseg.networks.pretrained import resolve_pretrained

__all__ = ["ResNetFCN"]

class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each position of a ``(B, C, H, W)`` map, with a per-channel affine.

    Every output position depends on that position's features only, as with BatchNorm at inference, so a
    network trained on small patches computes the same thing on large tiles; unlike BatchNorm it does not
    depend on the batch either. (GroupNorm averages over the whole input: a 64 px training patch and a
    1024 px tile would be normalised differently.) Parameter names match BatchNorm's affine weights.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


#: Normalisation layers: BatchNorm (torchvision's default, paper A) or the per-position channel LayerNorm.
_NORMS = {"batch": nn.BatchNorm2d, "layer": ChannelLayerNorm}
_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}


class ResNetFCN(nn.Module):
    """Fully convolutional torchvision ResNet.

    Args:
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` (default), ``"resnet101"``, ``"resnet152"``.
        num_classes: output channels (1 for tumor logits).
        output_stride: 32 (plain) or 16 (last stage dilated).
        pretrained_path: optional local torchvision ImageNet state dict (``.pth``) for the backbone; loaded
            with ``weights_only=True``.
        pretrained: ``"imagenet"`` (torchvision's weights, downloaded into torch's cache when missing) or
            ``"imagenet_if_cached"`` (only when cached); exclusive with ``pretrained_path``
            (:func:`~monai_wsseg.networks.pretrained.resolve_pretrained`).
        norm: ``"batch"`` (BatchNorm, paper A) or ``"layer"`` (:class:`ChannelLayerNorm`). With BatchNorm a
            MIL step normalises over the few slides of its bags, so the network can score a patch relative
            to the others in its batch, and the maps it draws at inference (running statistics) are not the
            scores it was trained on; the channel LayerNorm is the same in training and at inference.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 1,
        output_stride: int = 16,
        pretrained_path: str | os.PathLike | None = None,
        norm: str = "batch",
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {', '.join(_NORMS)}, got {norm!r}")
        if backbone not in _FEATURES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(_FEATURES)}")
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
        dilate = [False, False, output_stride == 16]
        if backbone in ("resnet18", "resnet34"):
            # BasicBlock ResNets refuse replace_stride_with_dilation; dilate layer4 by hand below.
            net = getattr(models, backbone)(weights=None, norm_layer=_NORMS[norm])
            if output_stride == 16:
                dilate_basic_layer(net.layer4)
        else:
            net = getattr(models, backbone)(weights=None, replace_stride_with_dilation=dilate,
                                            norm_layer=_NORMS[norm])
        pretrained_path = resolve_pretrained(pretrained, pretrained_path, backbone)
        if pretrained_path is not None:
            state = read_state_dict(pretrained_path, missing="pretrained weights", unreadable=f"{backbone} weights")
            missing, unexpected = net.load_state_dict(state, strict=False)
            # the channel LayerNorm keeps BatchNorm's affine weights but has no running statistics to load
            stats = ("running_mean", "running_var", "num_batches_tracked") if norm == "layer" else ()
            bad = [k for k in missing if not k.startswith("fc.")] + [
                k for k in unexpected if not k.startswith("fc.") and not k.endswith(stats)]
            if bad:
                raise ValueError(f"{pretrained_path}: not {backbone} weights (mismatched keys: {bad[:5]})")
        self.output_stride = output_stride
        self.num_classes = num_classes
        self.features = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
        )
        self.classifier = nn.Conv2d(_FEATURES[backbone], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised RGB → ``(B, C, ceil(H / stride), ceil(W / stride))`` logits."""
        return self.classifier(self.features(x))

    def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → ``(B, C)``: the spatial mean of the dense logits (one prediction per patch)."""
        return self.forward(x).mean(dim=(2, 3))


def dilate_basic_layer(layer: nn.Sequential, previous: int = 1, dilation: int = 2) -> None:
    """Trade a BasicBlock stage's stride 2 for dilation (torchvision refuses this for BasicBlock ResNets).

    As torchvision does for Bottleneck stages, the first conv of the stage keeps the previous stage's
    dilation and every other conv gets ``dilation``; output stride 8 dilates layer3 (1 → 2) then layer4 (2 → 4).
    """
    blocks: list[models.resnet.BasicBlock] = list(layer)
    first = blocks[0]
    first.conv1.stride = (1, 1)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    for i, block in enumerate(blocks):
        for conv in (block.conv1, block.conv2):
            d = previous if (i == 0 and conv is block.conv1) else dilation
            conv.dilation, conv.padding = (d, d), (d, d)
