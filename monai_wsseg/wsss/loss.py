"""Multi-layer pseudo supervision (paper B, eq. 13): one cross entropy per CAM layer's pseudo mask.

``L_seg = λ1·CE(s, p_b4_3) + λ2·CE(s, p_b5_2) + λ3·CE(s, p_bn7)`` with λ = 0.2 / 0.2 / 0.6. Each CE is
the mean over that mask's non-ignored pixels (white background in LUAD-HistoSeg is ``ignore_index``).
The pseudo masks are expected at the logits' resolution (the paper upsamples them to the image size
when they are generated; resizing label maps here would blur class boundaries into wrong labels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiLayerPseudoLoss"]


class MultiLayerPseudoLoss(nn.Module):
    """Weighted sum of cross entropies of one set of logits against ``L`` pseudo masks.

    Args:
        weights: ``λ_l ≥ 0`` per pseudo-mask layer, in the order of the mask channel (paper:
            ``(0.2, 0.2, 0.6)`` for b4_3, b5_2, bn7). They are used as given, not renormalised.
        ignore_index: label value that contributes nothing (paper B's white background).

    Shapes:
        ``logits``: ``(B, C, H, W)`` float. ``pseudo_masks``: ``(B, L, H, W)`` integer with
        ``L = len(weights)``, values in ``0..C-1`` or ``ignore_index``. Output: scalar.

    A layer whose pixels are all ignored contributes 0 (PyTorch's mean CE would be NaN there, and one
    all-background patch would poison the batch).
    """

    def __init__(self, weights: Sequence[float] = (0.2, 0.2, 0.6), ignore_index: int = 255) -> None:
        super().__init__()
        weights = [float(w) for w in weights]
        if not weights:
            raise ValueError("weights must name at least one pseudo-mask layer")
        if any(not math.isfinite(w) or w < 0 for w in weights):
            raise ValueError(f"weights must be finite and ≥ 0, got {weights}")
        if sum(weights) <= 0:
            raise ValueError(f"weights must not all be 0, got {weights}")
        self.weights = tuple(weights)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, pseudo_masks: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` logits, ``(B, L, H, W)`` pseudo masks → scalar ``Σ_l λ_l · CE_l``."""
        self._check(logits, pseudo_masks)
        masks = pseudo_masks.long()
        total = logits.new_zeros(())
        for layer, weight in enumerate(self.weights):
            target = masks[:, layer]
            # Sum over the non-ignored pixels / their count: the mean CE, but 0 (not NaN) when none is left.
            loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum")
            count = (target != self.ignore_index).sum().clamp_min(1)
            total = total + weight * loss / count
        return total

    def _check(self, logits: torch.Tensor, pseudo_masks: torch.Tensor) -> None:
        if logits.ndim != 4:
            raise ValueError(f"logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
        if not logits.is_floating_point():
            raise ValueError(f"logits must be floating point, got {logits.dtype}")
        if pseudo_masks.ndim != 4:
            raise ValueError(f"pseudo_masks must be (B, L, H, W) with L = {len(self.weights)} layers, "
                             f"got shape {tuple(pseudo_masks.shape)}")
        if pseudo_masks.is_floating_point() or pseudo_masks.is_complex() or pseudo_masks.dtype == torch.bool:
            raise ValueError(f"pseudo_masks must hold integer labels (int64), got {pseudo_masks.dtype}")
        b, c, h, w = logits.shape
        if pseudo_masks.shape[1] != len(self.weights):
            raise ValueError(f"pseudo_masks has {pseudo_masks.shape[1]} layers, the loss has "
                             f"{len(self.weights)} weights {self.weights}")
        if pseudo_masks.shape[0] != b or pseudo_masks.shape[2:] != (h, w):
            raise ValueError(f"pseudo_masks {tuple(pseudo_masks.shape)} do not match logits {tuple(logits.shape)} "
                             "in batch or spatial size (upsample the masks to the image size first)")
        valid = pseudo_masks != self.ignore_index
        if valid.any():
            labels = pseudo_masks[valid]
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= c:
                raise ValueError(f"pseudo_masks hold labels in [{lo}, {hi}], outside 0..{c - 1} "
                                 f"(ignore_index={self.ignore_index})")
