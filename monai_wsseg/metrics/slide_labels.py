"""Scores of tumor maps that need slide labels only, for choosing a checkpoint when no slide has a mask.

Without masks the truth is: every tissue cell of a normal slide is normal, and a tumor slide holds some
tumor. A good map therefore gives the most tumor-like cells of a tumor slide (its tumor) higher
probabilities than the most tumor-like cells of any normal slide (its lymphoid aggregates, benign
epithelium: the hardest negatives). :func:`top_fraction_mean` summarises a map by the mean of its top
``fraction`` of tissue cells, and :func:`label_margin` scores a set of slides by the mean, over all
(tumor, normal) pairs, of the difference of those summaries: in [-1, 1]; 0 for a constant map, negative
for an inverted one, and it keeps rising while pixel AUC has saturated at the slide level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from monai_wsseg.metrics.auc import rank_auc

__all__ = ["label_margin", "top_cells", "top_cells_auc", "top_fraction_mean"]


def top_fraction_mean(prob: np.ndarray, valid: np.ndarray, fraction: float = 0.1) -> float:
    """Mean of the highest ``fraction`` of ``prob`` over the ``valid`` cells (at least one cell).

    Args:
        prob: ``(h, w)`` tumor probabilities of a map (NaN where nothing was computed).
        valid: ``(h, w)`` bool, the tissue cells to use.
        fraction: share of the valid cells, in (0, 1].

    Returns:
        The mean, or NaN when no valid cell has a finite probability.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"top_fraction_mean: fraction must be in (0, 1], got {fraction}")
    values = np.asarray(prob, np.float64)[np.asarray(valid, bool)]
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan")
    k = max(1, round(fraction * values.size))
    return float(np.partition(values, values.size - k)[values.size - k:].mean())


def label_margin(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Mean over (tumor, normal) slide pairs of ``score_tumor − score_normal``; NaN without both labels.

    Args:
        scores: one summary per slide, e.g. :func:`top_fraction_mean` of its map (NaN entries are ignored).
        labels: slide labels, 1 tumor, 0 normal.
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels)
    keep = np.isfinite(s)
    pos, neg = s[keep & (y == 1)], s[keep & (y == 0)]
    if not pos.size or not neg.size:
        return float("nan")
    return float(pos.mean() - neg.mean())  # the mean of all pairwise differences


def top_cells(prob: np.ndarray, valid: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """The highest ``fraction`` of ``prob`` over the ``valid`` cells (finite values only), as a 1-D array."""
    if not 0 < fraction <= 1:
        raise ValueError(f"top_cells: fraction must be in (0, 1], got {fraction}")
    values = np.asarray(prob, np.float64)[np.asarray(valid, bool)]
    values = values[np.isfinite(values)]
    if not values.size:
        return values
    k = max(1, round(fraction * values.size))
    return np.partition(values, values.size - k)[values.size - k:]


def top_cells_auc(tumor_tops: Sequence[np.ndarray], normal_cells: Sequence[np.ndarray]) -> float:
    """AUC of the tumor slides' top cells (positives) against every tissue cell of the normal slides.

    Rank-based (Mann–Whitney, ties count half: :func:`~monai_wsseg.metrics.auc.rank_auc`), so it does not
    depend on how the probabilities are calibrated: 0.5 for a constant map, near 0.5 for an inverted one
    (whose hottest cells are normal tissue, as hot on normal slides), 1 when each tumor slide's hottest
    tenth is hotter than any normal tissue. NaN without cells of both kinds.
    """
    pos = np.concatenate([np.asarray(t, np.float64).ravel() for t in tumor_tops]) if tumor_tops else np.zeros(0)
    neg = np.concatenate([np.asarray(t, np.float64).ravel() for t in normal_cells]) if normal_cells else np.zeros(0)
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    return rank_auc(np.concatenate([pos, neg]), np.r_[np.ones(pos.size), np.zeros(neg.size)])
