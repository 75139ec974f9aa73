"""Tissue segmentation scores as paper B defines them: IoU per class, MIoU, FwIoU and ACC.

Pixels whose truth is ``ignore_index`` (white background in LUAD-HistoSeg) are left out entirely. A
prediction outside ``0..num_classes-1`` on a scored pixel (e.g. a background label) counts as a miss
for the true class and as a false positive for none.
"""

from __future__ import annotations

import csv
import os

import numpy as np

__all__ = ["TissueConfusion", "read_scores_table", "tissue_scores"]


class TissueConfusion:
    """Accumulates a ``(K, K + 1)`` confusion matrix (rows truth, columns prediction, last column "other")."""

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one prediction/truth pair of integer label arrays of the same shape."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and truth {target.shape} differ in shape")
        k = self.num_classes
        scored = np.ones(target.shape, bool) if self.ignore_index is None else target != self.ignore_index
        t, p = target[scored].astype(np.int64), pred[scored].astype(np.int64)
        if t.size and (t.min() < 0 or t.max() >= k):
            bad = sorted(set(np.unique(t[(t < 0) | (t >= k)]).tolist()))
            raise ValueError(f"truth holds labels {bad} outside 0..{k - 1} (ignore_index={self.ignore_index})")
        p = np.where((p >= 0) & (p < k), p, k)
        self.matrix += np.bincount(t * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)

    def scores(self) -> dict:
        """``{"iou": (K,) array (NaN for a class absent from truth and prediction), "miou", "fwiou", "acc"}``."""
        m = self.matrix
        tp = np.diag(m[:, : self.num_classes]).astype(np.float64)
        truth = m.sum(axis=1).astype(np.float64)
        predicted = m[:, : self.num_classes].sum(axis=0).astype(np.float64)
        union = truth + predicted - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        total = truth.sum()
        freq = truth / total if total else np.zeros_like(truth)
        return {
            "iou": iou,
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "fwiou": float(np.nansum(freq * iou)) if total else float("nan"),
            "acc": float(tp.sum() / total) if total else float("nan"),
        }


def tissue_scores(pred, target, num_classes: int, ignore_index: int | None = None) -> dict:
    """Scores of label arrays (or of sequences of them, pooled); see :meth:`TissueConfusion.scores`."""
    conf = TissueConfusion(num_classes, ignore_index)
    if isinstance(pred, (list, tuple)):
        if len(pred) != len(target):
            raise ValueError(f"{len(pred)} predictions for {len(target)} truths")
        for p, t in zip(pred, target, strict=True):
            conf.update(p, t)
    else:
        conf.update(pred, target)
    return conf.scores()


def read_scores_table(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """A table of these scores, as the WSSS evaluation writes it (``evaluation.csv``: a ``row`` column, then
    ``iou_<class>``, ``miou``, ``fwiou``, ``acc``) → ``{row: {column: value}}``; ``nan`` cells are NaN.

    Raises:
        ValueError: no ``row`` column, or a value that is not a number.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "row" not in reader.fieldnames:
            raise ValueError(f"{path}: no 'row' column")
        out = {}
        for r in reader:
            try:
                out[r["row"]] = {k: float(v) for k, v in r.items() if k != "row"}
            except (TypeError, ValueError):
                raise ValueError(f"{path}: row {r['row']!r} has a value that is not a number") from None
    return out
