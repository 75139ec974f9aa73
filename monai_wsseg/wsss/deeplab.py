"""DeepLabV3+ on a torchvision ResNet: paper B's phase-2 segmentation network.

Layout (Chen et al., ECCV 2018, as the WSSS-Tissue reference uses it with ResNet-101, output stride 16)::

    x (B, 3, H, W)
      └ stem + layer1 ─────────────────────────── low-level (B, c1, H/4, W/4) ─ 1×1 conv → 48 ch ┐
                └ layer2 … layer4 (dilated) ─ ASPP (1×1, 3×3 r=6/12/18, image pool) → 256 ch   │
                                                 └ bilinear ×(OS/4) ─────────────── concat ─────┘
                                                     └ 3×3 conv 256 → 3×3 conv 256 → 1×1 conv → C
                                                         └ bilinear to (H, W) → logits (B, C, H, W)

``output_stride=16`` dilates layer4 (ASPP rates 6/12/18); ``8`` dilates layer3 and layer4 (rates doubled
to 12/24/36, as in the DeepLab papers). Bottleneck ResNets (50/101) are dilated by torchvision; the
BasicBlock ResNets (18/34) refuse ``replace_stride_with_dilation``, so they are dilated here by hand.

The network returns logits. Paper B's classification gate works on the softmax probabilities of these
logits: see :mod:`monai_wsseg.wsss.gate` (re-exported here because the design places "DeepLabV3+
and the gate" in this module).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from monai_wsseg.networks.checkpoint import read_state_dict
from monai_wsseg.networks.fcn import dilate_basic_layer
from monai_wsseg.networks.pretrained import resolve_pretrained
from monai_wsseg.wsss.gate import GatedSegmenter, apply_gate, open_classes

__all__ = ["ASPP", "DeepLabV3Plus", "GatedSegmenter", "apply_gate", "open_classes"]

# (channels of layer1, channels of layer4) per backbone.
_CHANNELS = {
    "resnet18": (64, 512),
    "resnet34": (64, 512),
    "resnet50": (256, 2048),
    "resnet101": (256, 2048),
}
_ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),  # BN follows: no bias
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling.

    Five parallel branches on the backbone's last feature map — a 1×1 conv, three 3×3 atrous convs and
    global average pooling (broadcast back) — each ``out_channels`` wide, concatenated and projected by a
    1×1 conv.

    Args:
        in_channels: channels of the input feature map.
        rates: dilation rates of the three 3×3 branches.
        out_channels: width of every branch and of the output.
        dropout: dropout after the projection (regularises the head, as in DeepLabV3).

    Shapes: ``(B, in_channels, h, w)`` → ``(B, out_channels, h, w)``.
    """

    def __init__(self, in_channels: int, rates: tuple[int, int, int], out_channels: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, out_channels, 1)]
            + [_conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(
            _conv_bn_relu(out_channels * (len(rates) + 2), out_channels, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, h, w)`` → ``(B, C_out, h, w)``."""
        size = x.shape[-2:]
        # The pooled branch is 1×1: broadcasting by interpolation keeps it exportable (ONNX / TorchScript).
        pooled = F.interpolate(self.image_pool(x), size=size, mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with a torchvision ResNet encoder.

    Args:
        num_classes: output channels ``C`` (paper B: the tissue classes; white background is ignored in
            the loss, so it needs no channel unless the user wants one).
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"`` (default, as the
            reference code).
        output_stride: 16 (default; ASPP rates 6/12/18) or 8 (rates 12/24/36, 4× the ASPP compute).
        pretrained_path: optional local torchvision ImageNet ``state_dict`` for the backbone (``.pth``),
            read with ``torch.load(weights_only=True)``; a ``{"state_dict": ...}`` wrapper or a
            ``module.`` prefix is accepted and ``fc.*`` is ignored.
        aspp_dropout: dropout after the ASPP projection.
        pretrained: ``"imagenet"`` or ``"imagenet_if_cached"``: torchvision's ImageNet weights of the backbone
            by name (:func:`~monai_wsseg.networks.pretrained.resolve_pretrained`); exclusive with
            ``pretrained_path``.
        head_channels: width of the ASPP branches and the decoder convolutions (256 in DeepLabV3+ and
            the reference). The decoder's two 3×3 convolutions at H/4 cost more than a ResNet-18
            encoder at 256; 64 makes phase 2 ~2× faster on a CPU (the CPU profile's choice).

    Shapes: ``forward``: ``(B, 3, H, W)`` → logits ``(B, C, H, W)``. ``H`` and ``W`` need not be
    multiples of the stride: the decoder resizes to the low-level map and the output to the input.

    Raises:
        ValueError: unknown backbone, bad stride or class count, or a weights file that does not fit
            the backbone (the message names the file).
        FileNotFoundError: ``pretrained_path`` does not exist.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet101",
        output_stride: int = 16,
        pretrained_path: str | os.PathLike | None = None,
        aspp_dropout: float = 0.5,
        head_channels: int = 256,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if backbone not in _CHANNELS:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(_CHANNELS)}")
        if output_stride not in _ASPP_RATES:
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer ≥ 1, got {num_classes!r}")
        if not 0.0 <= aspp_dropout < 1.0:
            raise ValueError(f"aspp_dropout must be in [0, 1), got {aspp_dropout}")
        if isinstance(head_channels, bool) or not isinstance(head_channels, int) or head_channels < 1:
            raise ValueError(f"head_channels must be an integer ≥ 1, got {head_channels!r}")

        # Read the weights file first: a wrong path fails before the (slow) weight initialisation.
        pretrained_path = resolve_pretrained(pretrained, pretrained_path, backbone)
        state = None if pretrained_path is None else _read_weights(pretrained_path, backbone)
        net = _dilated_resnet(backbone, output_stride)
        if state is not None and pretrained_path is not None:
            _load_backbone_weights(net, backbone, state, pretrained_path)

        self.num_classes = num_classes
        self.backbone_name = backbone
        self.output_stride = output_stride
        low_channels, high_channels = _CHANNELS[backbone]
        # Encoder, split where the decoder taps the stride-4 features.
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.encoder = nn.Sequential(net.layer2, net.layer3, net.layer4)
        # Head: everything trained from scratch (the reference gives it 10× the backbone's learning rate).
        width = head_channels
        self.aspp = ASPP(high_channels, _ASPP_RATES[output_stride], width, aspp_dropout)
        self.low_level = _conv_bn_relu(low_channels, 48, 1)  # 48 channels: the DeepLabV3+ paper's choice
        self.decoder = nn.Sequential(
            _conv_bn_relu(width + 48, width, 3),
            _conv_bn_relu(width, width, 3),
        )
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised RGB → logits ``(B, C, H, W)``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input (B, 3, H, W), got {tuple(x.shape)}")
        size = x.shape[-2:]
        low = self.stem(x)  # (B, c1, H/4, W/4)
        high = self.aspp(self.encoder(low))  # (B, head_channels, H/OS, W/OS)
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.classifier(self.decoder(torch.cat([high, self.low_level(low)], dim=1)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the (possibly pretrained) ResNet encoder."""
        yield from self.stem.parameters()
        yield from self.encoder.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of ASPP, decoder and classifier (trained from scratch; the reference uses 10× lr)."""
        for module in (self.aspp, self.low_level, self.decoder, self.classifier):
            yield from module.parameters()


def _dilated_resnet(backbone: str, output_stride: int) -> models.ResNet:
    """A torchvision ResNet (no weights) whose last stages trade stride for dilation."""
    # layer2, layer3, layer4: which stages keep stride 1 and dilate instead.
    dilate = [False, output_stride == 8, True]
    if backbone in ("resnet18", "resnet34"):
        net = getattr(models, backbone)(weights=None)
        dilation = 1
        for layer, flag in zip((net.layer2, net.layer3, net.layer4), dilate, strict=True):
            if flag:
                dilate_basic_layer(layer, previous=dilation, dilation=dilation * 2)
                dilation *= 2
        return net
    return getattr(models, backbone)(weights=None, replace_stride_with_dilation=dilate)


def _read_weights(path: str | os.PathLike, backbone: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in a local weights file (``weights_only=True``), without ``fc.*``."""
    state = read_state_dict(path, missing="pretrained weights", unreadable=f"{backbone} weights")
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _load_backbone_weights(net: models.ResNet, backbone: str, state: dict[str, torch.Tensor],
                           path: str | os.PathLike) -> None:
    """Load a torchvision ImageNet ``state_dict`` (read from ``path``) into ``net``, or say what differs."""
    expected = {k: v.shape for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)}≠{tuple(s)}" for k, s in expected.items()
             if k in state and state[k].shape != s]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' …' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise ValueError(f"{path}: not {backbone} ImageNet weights ({detail})")
    net.load_state_dict(state, strict=False)  # strict except for the unused fc
