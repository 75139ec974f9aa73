"""Wide ResNet-38d: the phase-1 backbone of paper B (output stride 8, named features for Grad-CAM).

Architecture (pre-activation residual blocks, Wu et al. "Wider or Deeper", model A, with the last
stages dilated instead of strided, as the WSSS-Tissue reference uses it). Channel counts at
``width=1``; every one of them is multiplied by ``width``:

========  =====================================  ======  ========  ================
name      block                                  stride  dilation  output channels
========  =====================================  ======  ========  ================
conv1a    3×3 conv                               1       1         64
b2        basic (3×3 → 3×3), mid 128             2       1         128
b2_1/_2   basic, mid 128                         1       1         128
b3        basic, mid 256                         2       1         256
b3_1/_2   basic, mid 256                         1       1         256
b4        basic, mid 512                         2       1         512
b4_1…_5   basic, mid 512                         1       1         512
b5        basic, mid 512                         1       1 then 2  1024
b5_1/_2   basic, mid 512                         1       2         1024
b6        bottleneck 1×1 512 → 3×3 1024 → 1×1    1       4         2048   (Dropout2d 0.3)
b7        bottleneck 1×1 1024 → 3×3 2048 → 1×1   1       4         4096   (Dropout2d 0.5)
bn7       BatchNorm (then ReLU → ``"final"``)    -       -         4096
========  =====================================  ======  ========  ================

Shapes: input ``(B, 3, H, W)`` → every feature from ``b4`` on is ``(B, C·width, ⌈H/8⌉, ⌈W/8⌉)``; for
example ``bn7`` is ``(B, 4096·width, H/8, W/8)`` and a 224 px patch gives 28×28 maps.

Feature names are the block names above. The value of a name is exactly what a forward hook on
``network.<name>`` would see: a block's output is its residual sum (the pre-activation design puts
BN + ReLU at the *start* of the next block), ``bn7`` is the BatchNorm output before its ReLU, and
``"final"`` = ``ReLU(bn7)`` is the feature map the classifier uses. The module and parameter names
follow the reference's naming (``conv1a``, ``b4_3.bn_branch2a``, ``b6.conv_branch2b2``, ``bn7`` …) so a
state dict converted for the reference (ImageNet weights) can be loaded with ``weights_path``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_wsseg.networks.checkpoint import read_state_dict

__all__ = ["BLOCK_NAMES", "DEFAULT_OUT_LAYERS", "ResNet38d"]

logger = logging.getLogger(__name__)

#: Every addressable feature, in forward order. ``"final"`` is ``ReLU(bn7)``.
BLOCK_NAMES: tuple[str, ...] = (
    "conv1a", "b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2",
    "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5",
    "b5", "b5_1", "b5_2", "b6", "b7", "bn7", "final",
)
#: What ``forward`` returns by default: paper B's Grad-CAM layers (b4_3, b5_2, bn7), the reference
#: code's (b4_5 instead of b4_3), and the classifier's input.
DEFAULT_OUT_LAYERS: tuple[str, ...] = ("b4_3", "b4_5", "b5_2", "bn7", "final")

# (name, kind, mid channels, out channels, stride, first dilation, dilation) at width 1.
_BASIC = "basic"
_BOTTLENECK = "bottleneck"
_SPEC: tuple[tuple[str, str, int, int, int, int, int], ...] = (
    ("b2", _BASIC, 128, 128, 2, 1, 1),
    ("b2_1", _BASIC, 128, 128, 1, 1, 1),
    ("b2_2", _BASIC, 128, 128, 1, 1, 1),
    ("b3", _BASIC, 256, 256, 2, 1, 1),
    ("b3_1", _BASIC, 256, 256, 1, 1, 1),
    ("b3_2", _BASIC, 256, 256, 1, 1, 1),
    ("b4", _BASIC, 512, 512, 2, 1, 1),
    ("b4_1", _BASIC, 512, 512, 1, 1, 1),
    ("b4_2", _BASIC, 512, 512, 1, 1, 1),
    ("b4_3", _BASIC, 512, 512, 1, 1, 1),
    ("b4_4", _BASIC, 512, 512, 1, 1, 1),
    ("b4_5", _BASIC, 512, 512, 1, 1, 1),
    # b5 keeps stride 1 (output stride 8); its first conv is undilated, as it still sees b4's grid.
    ("b5", _BASIC, 512, 1024, 1, 1, 2),
    ("b5_1", _BASIC, 512, 1024, 1, 2, 2),
    ("b5_2", _BASIC, 512, 1024, 1, 2, 2),
    ("b6", _BOTTLENECK, 0, 2048, 1, 4, 4),
    ("b7", _BOTTLENECK, 0, 4096, 1, 4, 4),
)


class _BasicBlock(nn.Module):
    """Pre-activation residual block: ``x + conv3(relu(bn(conv3(relu(bn(x))))))``.

    The shortcut is a 1×1 convolution of the *activated* input when the shape changes (as in the
    reference), the identity otherwise. ``(B, in, H, W)`` → ``(B, out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1, first_dilation: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        self.same_shape = in_ch == out_ch and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(in_ch, mid_ch, 3, stride, padding=first_dilation, dilation=first_dilation,
                                       bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_ch)
        self.conv_branch2b1 = nn.Conv2d(mid_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(act)
        branch = self.conv_branch2a(act)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(branch)))
        return shortcut + branch


class _BottleneckBlock(nn.Module):
    """Pre-activation bottleneck: 1×1 (out/4) → 3×3 dilated (out/2) → 1×1 (out), Dropout2d inside.

    The shortcut is always a 1×1 convolution of the activated input (channels change in b6 and b7).
    ``(B, in, H, W)`` → ``(B, out, H, W)``.
    """

    def __init__(self, in_ch: int, out_ch: int, dilation: int, dropout: float) -> None:
        super().__init__()
        mid1, mid2 = max(1, out_ch // 4), max(1, out_ch // 2)
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(in_ch, mid1, 1, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid1)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(mid1, mid2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(mid2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(mid2, out_ch, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn_branch2a(x))
        shortcut = self.conv_branch1(act)
        branch = self.conv_branch2a(act)
        branch = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(branch))))
        branch = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(branch))))
        return shortcut + branch


class ResNet38d(nn.Module):
    """Wide ResNet-38d with output stride 8, returning a dict of named feature maps.

    Args:
        width: multiplies every channel count (``round(c·width)``, at least 1); 1.0 is the paper's
            network (~104 M parameters), 0.125 a CPU-sized one for tests and demos.
        frozen_bn: keep every BatchNorm in eval mode (running statistics used and never updated) and
            its affine parameters frozen, whatever ``train()`` is called with — what the reference
            does with ImageNet weights and small batches. Leave it off when training from scratch: with
            initial statistics (mean 0, variance 1) nothing normalises the 17 residual sums, and a
            width-0.125 PDA classifier went to NaN within 5 SGD steps (lr 1e-2) in our check.
        frozen_layers: block names (e.g. ``("conv1a", "b2", "b2_1", "b2_2")``, the reference's choice
            with ImageNet weights) whose parameters get ``requires_grad=False``.
        block_dropout: Dropout2d probabilities inside ``b6`` and ``b7`` (reference: 0.3, 0.5).
        out_layers: the feature names ``forward`` returns (any of :data:`BLOCK_NAMES`).
        weights_path: optional local state dict (e.g. converted ImageNet weights, or a bundle
            checkpoint) loaded with ``torch.load(weights_only=True)``; a ``{"model"|"state_dict"|…}``
            wrapper and a DDP ``module.`` prefix are accepted. Nothing is ever downloaded.
        weights_strict: if False, keys in the file that the network lacks (say, an ImageNet
            classifier) are ignored with a warning; missing or wrongly shaped tensors always raise.

    Attributes:
        feature_channels: ``{name: channels}`` of every feature in :data:`BLOCK_NAMES`.
        out_channels: channels of ``"final"`` (the classifier input), ``4096·width``.
        output_stride: 8.
    """

    output_stride: int = 8

    def __init__(
        self,
        width: float = 1.0,
        frozen_bn: bool = False,
        frozen_layers: Sequence[str] = (),
        block_dropout: tuple[float, float] = (0.3, 0.5),
        out_layers: Sequence[str] = DEFAULT_OUT_LAYERS,
        weights_path: str | os.PathLike | None = None,
        weights_strict: bool = True,
    ) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        unknown = [n for n in list(out_layers) + list(frozen_layers) if n not in BLOCK_NAMES]
        if unknown:
            raise ValueError(f"unknown layer names {unknown}; choose from {', '.join(BLOCK_NAMES)}")
        if not out_layers:
            raise ValueError("out_layers must name at least one feature")
        if len(block_dropout) != 2 or not all(0.0 <= p < 1.0 for p in block_dropout):
            raise ValueError(f"block_dropout must be two probabilities in [0, 1), got {block_dropout}")

        def ch(c: int) -> int:
            return max(1, round(c * width))

        self.width = float(width)
        self.out_layers = tuple(out_layers)
        self.frozen_bn = bool(frozen_bn)
        self.conv1a = nn.Conv2d(3, ch(64), 3, padding=1, bias=False)
        self.feature_channels: dict[str, int] = {"conv1a": ch(64)}
        in_ch = ch(64)
        drop = {"b6": block_dropout[0], "b7": block_dropout[1]}
        for name, kind, mid, out, stride, first_dil, dil in _SPEC:
            if kind == _BASIC:
                block: nn.Module = _BasicBlock(in_ch, ch(mid), ch(out), stride, first_dil, dil)
            else:
                block = _BottleneckBlock(in_ch, ch(out), dil, drop[name])
            self.add_module(name, block)
            in_ch = ch(out)
            self.feature_channels[name] = in_ch
        self.bn7 = nn.BatchNorm2d(in_ch)
        self.feature_channels["bn7"] = self.feature_channels["final"] = in_ch
        self.out_channels = in_ch
        self._last_needed = max(BLOCK_NAMES.index(n) for n in self.out_layers)
        self._init_weights()

        if weights_path is not None:
            self.load_weights(weights_path, strict=weights_strict)
        self._freeze(frozen_layers)

    def _freeze(self, frozen_layers: Sequence[str]) -> None:
        """Stop the gradients of ``frozen_layers`` and, with ``frozen_bn``, of every BatchNorm (kept in eval)."""
        for name in frozen_layers:
            if name == "final":  # a ReLU: nothing to freeze
                continue
            for p in getattr(self, name).parameters():
                p.requires_grad_(False)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)
            self.train(self.training)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He initialisation: the network is mostly trained from scratch here (no public weights).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> ResNet38d:
        """Set train/eval mode; with ``frozen_bn`` every BatchNorm stays in eval mode."""
        super().train(mode)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def load_weights(self, path: str | os.PathLike, strict: bool = True) -> None:
        """Load a local state dict into the backbone.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a state dict, or its tensors do not fit this network (the
                message names the file, the missing / unexpected / mis-shaped keys and the width).
        """
        weights = read_state_dict(path, missing="ResNet38d weights", unreadable="a state dict")
        own = self.state_dict()
        # num_batches_tracked is bookkeeping that converted (MXNet) weights do not carry.
        missing = [k for k in own if k not in weights and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in weights if k not in own]
        shape = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in weights and weights[k].shape != own[k].shape]
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected and strict:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shape:
            problems.append(f"{len(shape)} with another shape (e.g. {shape[:2]})")
        if problems:
            raise ValueError(f"{path}: weights do not fit ResNet38d(width={self.width}): " + "; ".join(problems))
        if unexpected:
            logger.warning("%s: ignoring %d keys ResNet38d does not have (e.g. %s)", path, len(unexpected),
                           unexpected[:3])
        self.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` normalised RGB → ``{name: feature}`` for the names in ``out_layers``.

        Shapes: ``conv1a`` ``(B, 64w, H, W)``; ``b2*`` ``(B, 128w, H/2, W/2)``; ``b3*`` ``(B, 256w, H/4,
        W/4)``; ``b4*`` ``(B, 512w, H/8, W/8)``; ``b5*`` ``(B, 1024w, H/8, W/8)``; ``b6`` ``(B, 2048w, H/8,
        W/8)``; ``b7``, ``bn7``, ``final`` ``(B, 4096w, H/8, W/8)`` (w = width, sizes rounded up).
        Blocks after the last requested name are not computed.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        wanted = set(self.out_layers)
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(BLOCK_NAMES):
            if name == "final":
                x = F.relu(x)
            else:
                x = getattr(self, name)(x)
            if name in wanted:
                out[name] = x
            if i == self._last_needed:
                break
        return out
