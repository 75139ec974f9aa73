"""Paper A's multiple-instance loss: proxy labels from the top α and bottom β of a bag's predictions.

For a bag (the patches sampled from one slide) of ``n`` instances with slide label ``T``:

* ``T = 0`` (normal slide): every instance is labelled 0 — exact supervision.
* ``T = 1`` (tumor slide): the ``max(1, ⌊α·n⌋)`` instances with the highest logits are labelled 1, the
  ``⌊β·n⌋`` with the lowest are labelled 0, and the rest are masked out of the loss.

Choices where the paper is silent (documented in the MIL bundle's README):

* at least one positive per tumor bag (``max(1, ·)``), so ``α·n < 1`` neither divides by zero nor
  silently ignores the slide label, as the reference code does;
* ties are broken by instance order (a stable sort), so the labels are deterministic;
* where the two sets would overlap, the bottom set wins (as in the reference code); with α + β ≤ 1 this
  can only happen through the ``max(1, ·)`` rule on tiny bags;
* the loss is Σ c_y · BCE(logit, y) over labelled instances ÷ the number of labelled instances in the
  batch: ``c0`` and ``c1`` weight the classes (paper: "constants for batch averaging and class
  imbalance") without changing the normaliser.
* ``balance=True`` (an option, off in the paper's recipe, on in the CPU profile) averages each class on
  its own instead: ``½·c1·mean BCE over the tumor-labelled instances + ½·c0·mean BCE over the
  normal-labelled ones`` (one mean alone when a batch holds one class). With the plain mean the tumor
  share of the labelled instances falls from ½ (slide-label warm-up on balanced steps) to α / (1 + α)
  ≈ 0.17 the moment the proxy labels start; the normal slides' gradient then pulls every cell down, tumor
  first where it looks like their lymphoid aggregates, and the top α of a tumor slide drifts to stroma:
  the validation dip right after the warm-up. Balanced, the tumor side keeps half the gradient whatever
  α and β are.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from typing_extensions import override

__all__ = ["TopKBottomKMILLoss", "check_alpha_beta"]

_EPS = 1e-9  # α·n computed in floating point: 0.6 · 5 must floor to 3, not 2


def check_alpha_beta(alpha: float, beta: float) -> tuple[float, float]:
    """Validate ``(α, β)`` against the paper's feasible set F = {α > 0, β ≥ 0, α + β ≤ 1}."""
    alpha, beta = float(alpha), float(beta)
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"alpha and beta must be finite numbers, got alpha={alpha}, beta={beta}")
    if alpha <= 0:
        raise ValueError(
            f"alpha={alpha} must be > 0: with no positive proxy label a tumor slide would train as all normal"
        )
    if alpha > 1 or beta < 0 or beta > 1:
        raise ValueError(f"alpha={alpha} and beta={beta} must lie in [0, 1] (they are fractions of a bag)")
    if alpha + beta > 1 + _EPS:
        raise ValueError(
            f"alpha + beta = {alpha + beta:g} > 1: the top-alpha (tumor) and bottom-beta (normal) proxy "
            "labels would contradict each other on the same instances"
        )
    return alpha, beta


class TopKBottomKMILLoss(nn.Module):
    """Masked BCE against top-α / bottom-β proxy labels (see the module docstring).

    Args:
        alpha: minimum assumed tumor fraction of a tumor slide, in (0, 1].
        beta: minimum assumed normal fraction of a tumor slide, in [0, 1 − α].
        c0, c1: weights of instances labelled normal and tumor.
        balance: average each class's labelled instances on its own and the two means together, instead
            of one mean over all labelled instances (see the module docstring).

    Shapes:
        logits: ``(B, N)`` — B bags of N instance logits — or ``(B, N, H, W)``, every spatial cell an
        instance (n = N·H·W). labels: ``(B,)`` slide labels in {0, 1}. Returns a scalar.
    """

    def __init__(
        self, alpha: float = 0.2, beta: float = 0.0, c0: float = 1.0, c1: float = 1.0, balance: bool = False
    ) -> None:
        super().__init__()
        self.alpha, self.beta = check_alpha_beta(alpha, beta)
        if not (c0 >= 0 and c1 >= 0 and c0 + c1 > 0):
            raise ValueError(f"class weights must be ≥ 0 and not both 0, got c0={c0}, c1={c1}")
        self.c0, self.c1 = float(c0), float(c1)
        self.balance = bool(balance)

    @torch.no_grad()
    def proxy_labels(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Proxy targets and the mask of labelled instances, both ``(B, n)`` float, without gradient."""
        flat = self._flatten(logits)
        labels = self._check_labels(labels, flat.shape[0])
        b, n = flat.shape
        k_top = max(1, math.floor(self.alpha * n + _EPS))
        k_bottom = math.floor(self.beta * n + _EPS)
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices  # rank 0 = highest logit
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(n, device=flat.device).expand(b, n))
        top = rank < k_top
        bottom = rank >= n - k_bottom
        positive = labels.bool().view(b, 1)
        targets = (top & ~bottom & positive).float()
        mask = (~positive | top | bottom).float()
        return targets, mask

    @override
    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        flat = self._flatten(logits)
        targets, mask = self.proxy_labels(flat, labels)
        bce = F.binary_cross_entropy_with_logits(flat, targets, reduction="none")
        if not self.balance:
            weights = mask * torch.where(targets > 0, self.c1, self.c0)
            return (bce * weights).sum() / mask.sum().clamp_min(1.0)
        tumor = mask * targets
        means = [
            weight * (bce * part).sum() / part.sum()
            for weight, part in ((self.c1, tumor), (self.c0, mask - tumor))
            if part.sum() > 0
        ]
        return torch.stack(means).mean()

    @staticmethod
    def _flatten(logits: torch.Tensor) -> torch.Tensor:
        if logits.ndim not in (2, 4):
            raise ValueError(f"logits must be (B, N) or (B, N, H, W), got shape {tuple(logits.shape)}")
        if logits.shape[0] == 0 or logits[0].numel() == 0:
            raise ValueError(f"logits hold no instances: shape {tuple(logits.shape)}")
        return logits.reshape(logits.shape[0], -1)

    @staticmethod
    def _check_labels(labels: torch.Tensor, batch: int) -> torch.Tensor:
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.numel() != batch:
            raise ValueError(f"labels must hold one slide label per bag ({batch}), got {labels.numel()}")
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError(f"slide labels must be 0 (normal) or 1 (tumor), got {labels.tolist()}")
        return labels
