"""ROC AUC, the project's one implementation: the Mann–Whitney statistic, ties counted ½.

* :class:`AUCAccumulator` / :func:`pixel_auc` — pixel AUC of probability maps against expert masks,
  poolable over slides in constant memory. Scores are quantised to ``bins`` levels (256 matches the uint8
  maps the writers store), and positives and negatives are counted per level; the AUC is then exact for
  the quantised scores. Pooling slides is adding their histograms, so a cohort of gigapixel masks never
  needs its pixels in memory at once.
* :func:`rank_auc` — exact AUC of any real scores held in memory (patch logits, a few cells per slide),
  from their ranks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AUCAccumulator", "pixel_auc", "rank_auc"]


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
        """Add ``other``'s counts (same ``bins``) to this accumulator; returns ``self``."""
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


def rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC of real ``scores`` for ``labels`` (non-zero = positive): (rank sum of the positives −
    P(P+1)/2) / (P·N), tied scores sharing their mean rank. NaN when there are no positives or no negatives.

    Unlike :class:`AUCAccumulator` nothing is quantised, so scores need not lie in [0, 1] (logits rank
    without the ties that probabilities saturating at 1.0 would make).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(labels).reshape(-1) != 0
    if scores.shape != pos.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({pos.size}) differ in length")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each distinct score
    rank_sum = mean_rank[inverse.reshape(-1)][pos].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
