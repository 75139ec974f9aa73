"""Pixel AUC of probability maps against expert masks, poolable over slides in constant memory.

Scores are quantised to ``bins`` levels (256 matches the uint8 maps the writers store), and positives
and negatives are counted per level; the AUC is then the Mann–Whitney statistic with ties counted ½,
exact for the quantised scores. Pooling slides is adding their histograms, so a cohort of gigapixel
masks never needs its pixels in memory at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AUCAccumulator", "pixel_auc"]


class AUCAccumulator:
    """Histogram ROC accumulator for scores in ``[0, 1]``."""

    def __init__(self, bins: int = 256) -> None:
        if bins < 2:
            raise ValueError(f"bins must be ≥ 2, got {bins}")
        self.bins = bins
        self.pos = np.zeros(bins, dtype=np.int64)
        self.neg = np.zeros(bins, dtype=np.int64)

    def update(self, scores: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add pixels: ``scores`` in [0, 1] (NaN = no prediction, skipped), ``truth`` non-zero = positive,
        ``valid`` (optional bool) restricts the pixels counted (e.g. tissue only)."""
        scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth)
        if scores.shape != truth.shape:
            raise ValueError(f"scores {scores.shape} and truth {truth.shape} differ in shape")
        keep = ~np.isnan(scores)
        if valid is not None:
            keep &= np.asarray(valid, bool)
        s = scores[keep]
        if s.size and (s.min() < 0 or s.max() > 1):
            raise ValueError(f"scores must lie in [0, 1], got [{s.min():.3g}, {s.max():.3g}]")
        idx = np.minimum((s * (self.bins - 1) + 0.5).astype(np.int64), self.bins - 1)
        t = truth[keep] != 0
        self.pos += np.bincount(idx[t], minlength=self.bins)
        self.neg += np.bincount(idx[~t], minlength=self.bins)

    def merge(self, other: AUCAccumulator) -> AUCAccumulator:
        if other.bins != self.bins:
            raise ValueError("cannot merge accumulators with different bins")
        self.pos += other.pos
        self.neg += other.neg
        return self

    def auc(self) -> float:
        """ROC AUC (NaN when there are no positives or no negatives)."""
        n_pos, n_neg = int(self.pos.sum()), int(self.neg.sum())
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        below = np.concatenate(([0], np.cumsum(self.neg)[:-1]))  # negatives strictly below each level
        wins = (self.pos * (below + 0.5 * self.neg)).sum()
        return float(wins / (n_pos * n_neg))


def pixel_auc(scores: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None, bins: int = 256) -> float:
    """AUC of one map; see :class:`AUCAccumulator`."""
    acc = AUCAccumulator(bins)
    acc.update(scores, truth, valid)
    return acc.auc()
