"""Paper B's classification gate: the patch classifier closes tissue classes the segmenter may not use.

Paper B, eq. (14): with ``ŷ_k`` the stage-1 classifier's probability of class ``k`` in a patch and
``o_k`` the segmenter's probability map of that class, ``o_k ← 0`` where ``ŷ_k ≤ ε`` (ε = 0.1), then
``s = argmax_k o_k``.

The gate acts on **probabilities**. The reference code multiplies raw logits by the 0/1 gate instead;
a closed class then has logit 0, which beats every open class whose logit is negative, and after a
softmax it still gets a non-zero share. :func:`apply_gate` therefore refuses inputs outside [0, 1].

Rules beyond the paper, chosen here:

* ``background_index`` (if the segmenter has a background channel) is never gated: the classifier is
  trained on tissue labels only and says nothing about background.
* A sample whose every gateable class is closed is left ungated: the classifier found no tissue at all
  in a tissue patch, which is a classifier failure; zeroing every map would make the argmax arbitrary
  (or all background), so the segmenter's own answer is kept.
* Open classes are floored at the smallest positive float, so that a pixel where float32 softmax
  underflowed to exactly 0 for every open class still cannot pick a closed class in the argmax
  (a change of ~1e-38, invisible otherwise).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GatedSegmenter", "apply_gate", "open_classes"]

_TOL = 1e-4  # float rounding slack when checking that inputs are probabilities


def open_classes(class_probs: torch.Tensor, num_classes: int, epsilon: float = 0.1,
                 background_index: int | None = None) -> torch.Tensor:
    """Which classes each sample keeps, after the all-closed rule.

    Args:
        class_probs: ``(B, C)`` classifier probabilities (sigmoid of multi-label logits), or
            ``(B, C - 1)`` when ``background_index`` is given and the classifier has no background
            output: a column is then inserted for the background (it is never gated anyway).
        num_classes: ``C``, the segmenter's channels.
        epsilon: a class is closed when its probability is ``≤ epsilon``.
        background_index: the segmenter's background channel, never closed; ``None`` if it has none.

    Returns:
        ``(B, C)`` bool, ``True`` = open.
    """
    _check_epsilon(epsilon)
    if background_index is not None and not 0 <= background_index < num_classes:
        raise ValueError(f"background_index {background_index} is outside 0..{num_classes - 1}")
    if class_probs.ndim != 2:
        raise ValueError(f"class_probs must be (B, C), got shape {tuple(class_probs.shape)}")
    if not class_probs.is_floating_point():
        raise ValueError(f"class_probs must be floating point probabilities, got {class_probs.dtype}")
    if background_index is not None and class_probs.shape[1] == num_classes - 1:
        # Classifier without a background output: give background a dummy column (it is never gated).
        filler = class_probs.new_ones(class_probs.shape[0], 1)
        class_probs = torch.cat([class_probs[:, :background_index], filler, class_probs[:, background_index:]], 1)
    if class_probs.shape[1] != num_classes:
        extra = f" or {num_classes - 1} (no background column)" if background_index is not None else ""
        raise ValueError(f"class_probs has {class_probs.shape[1]} classes, the segmentation {num_classes}{extra}")
    _check_unit_interval(class_probs, "class_probs", "apply torch.sigmoid to the classifier's logits")

    is_open = class_probs > epsilon  # paper: closed when ŷ ≤ ε
    gateable = torch.ones(num_classes, dtype=torch.bool, device=class_probs.device)
    if background_index is not None:
        gateable[background_index] = False
        is_open[:, background_index] = True
    # All-closed rule: a sample with no open gateable class keeps every class open.
    none_open = ~(is_open & gateable).any(dim=1, keepdim=True)
    return is_open | none_open


def apply_gate(probabilities: torch.Tensor, class_probs: torch.Tensor, epsilon: float = 0.1,
               background_index: int | None = None) -> torch.Tensor:
    """Zero the probability maps of the classes the classifier rules out (paper B, eq. 14).

    Args:
        probabilities: ``(B, C, H, W)`` segmentation probabilities (softmax over ``C``), in [0, 1].
            Logits are refused: gating logits lets a closed class (logit 0) win the argmax.
        class_probs: ``(B, C)`` classifier probabilities, or ``(B, C - 1)`` with ``background_index``
            (see :func:`open_classes`).
        epsilon: closing threshold: class ``k`` is closed when ``class_probs[:, k] ≤ epsilon``.
        background_index: channel that is never gated, or ``None``.

    Returns:
        ``(B, C, H, W)`` gated probabilities: 0 for closed classes, otherwise the input (floored at the
        smallest positive float, so ``argmax`` over ``C`` never picks a closed class). Not renormalised,
        as in the paper; renormalise if calibrated probabilities are needed.

    Raises:
        ValueError: wrong shapes, batch sizes that differ, or values outside [0, 1].
    """
    if probabilities.ndim != 4:
        raise ValueError(f"probabilities must be (B, C, H, W), got shape {tuple(probabilities.shape)}")
    if not probabilities.is_floating_point():
        raise ValueError(f"probabilities must be floating point, got {probabilities.dtype}")
    if class_probs.shape[0] != probabilities.shape[0]:
        raise ValueError(f"batch sizes differ: probabilities {probabilities.shape[0]}, "
                         f"class_probs {class_probs.shape[0]}")
    _check_unit_interval(probabilities, "probabilities", "gate softmax probabilities, never logits")
    keep = open_classes(class_probs, probabilities.shape[1], epsilon, background_index)
    keep = keep[:, :, None, None].to(probabilities.device)
    tiny = torch.finfo(probabilities.dtype).tiny
    return torch.where(keep, probabilities.clamp_min(tiny), torch.zeros_like(probabilities))


class GatedSegmenter(nn.Module):
    """Segmenter + classifier at inference: ``(B, 3, H, W)`` → gated probabilities ``(B, C, H, W)``.

    Args:
        seg_net: returns segmentation logits ``(B, C, H, W)`` (e.g. :class:`DeepLabV3Plus`).
        cls_net: returns multi-label logits ``(B, C)`` (``(B, C, 1, 1)`` is accepted; with a tuple or list
            output its first element is used), or ``(B, C - 1)`` when ``background_index`` is given.
            Both networks see the same input.
        epsilon: the gate's threshold (paper: 0.1).
        background_index: segmenter channel never gated, or ``None``.

    The output is what whole-slide inference should average over overlapping patches (paper B stitches
    probabilities, then takes the argmax).
    """

    def __init__(self, seg_net: nn.Module, cls_net: nn.Module, epsilon: float = 0.1,
                 background_index: int | None = None) -> None:
        super().__init__()
        _check_epsilon(epsilon)
        self.seg_net, self.cls_net = seg_net, cls_net
        self.epsilon, self.background_index = epsilon, background_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → gated probabilities ``(B, C, H, W)``."""
        probabilities = torch.softmax(self.seg_net(x), dim=1)
        logits = self.cls_net(x)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if logits.ndim == 4 and logits.shape[2:] == (1, 1):
            logits = logits.flatten(1)
        return apply_gate(probabilities, torch.sigmoid(logits), self.epsilon, self.background_index)


def _check_epsilon(epsilon: float) -> None:
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")


def _check_unit_interval(t: torch.Tensor, name: str, hint: str) -> None:
    if t.numel() == 0:
        return
    lo, hi = torch.aminmax(t.detach())
    if not (lo >= -_TOL and hi <= 1 + _TOL):  # also catches NaN
        raise ValueError(f"{name} must lie in [0, 1] (got values in [{lo.item():.4g}, {hi.item():.4g}]): {hint}")
