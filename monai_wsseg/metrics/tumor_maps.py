"""Tumor heatmaps against expert masks: masks on a map grid, pixel AUC with and without background,
confusion counts at a threshold, and the threshold that maximises F1.

Conventions (paper A's evaluation):

* A map is a ``(h, w)`` grid of tumor scores in ``[0, 1]`` at an integer ``downsample`` of level 0
  (cell ``(i, j)`` covers level-0 pixels ``[j·d, (j+1)·d) × [i·d, (i+1)·d)``), NaN = no prediction.
* A cell is **tumor** when at least half of its area is tumor in the expert mask
  (:data:`TUMOR_FRACTION`), **tissue** likewise for the tissue mask.
* **With background**: every cell that holds a prediction (glass included). **Without background**:
  only the tissue cells among those. Cells without a prediction count in neither.
* Scores are counted in :class:`~monai_wsseg.metrics.auc.AUCAccumulator` histograms (256 levels, the
  uint8 levels the map TIFFs store), so a threshold ``t`` classifies a cell as tumor when its
  *quantised* score ``round(255·s) / 255 ≥ t``; this makes figures from live maps and from stored
  TIFF maps identical, and pooling slides is adding histograms.
* Dice on pixels equals F1 (``2TP / (2TP + FP + FN)``); both are reported, with the same value.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monai_wsseg.metrics.auc import AUCAccumulator

if TYPE_CHECKING:  # the manifest module is light, but keep the metrics importable on their own
    from monai_wsseg.datasets.manifest import SlideRecord

__all__ = [
    "TUMOR_FRACTION",
    "Confusion",
    "TumorMapAccumulator",
    "best_threshold",
    "confusion_at",
    "load_mask",
    "mask_on_grid",
]

#: A grid cell is tumor (or tissue) when at least this fraction of its area is.
TUMOR_FRACTION = 0.5

# Bounds the temporaries of mask resampling (elements per slab).
_SLAB_ELEMENTS = 1 << 23


# ---------------------------------------------------------------------------------------------------------
# masks on a grid
# ---------------------------------------------------------------------------------------------------------
def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (level-0 pixels per cell), got {value!r}")
    return int(value)


def _axis_weights(n_out: int, d_out: int, n_in: int, d_in: int):
    """``(n_out, n_in)`` sparse matrix: share of output cell ``i``'s length covered by input pixel ``a``.

    Output cell ``i`` spans level-0 ``[i·d_out, (i+1)·d_out)``, input pixel ``a`` spans
    ``[a·d_in, (a+1)·d_in)``; input beyond ``n_in`` is absent (counts as 0).
    """
    from scipy import sparse

    rows, cols, vals = [], [], []
    starts = np.arange(n_out, dtype=np.int64) * d_out
    first = starts // d_in
    last = np.minimum((starts + d_out - 1) // d_in, n_in - 1)
    span = int((last - first).max(initial=0)) + 1
    for k in range(span):
        a = first + k
        ok = a <= last
        i = np.nonzero(ok)[0]
        a = a[ok]
        overlap = np.minimum(starts[i] + d_out, (a + 1) * d_in) - np.maximum(starts[i], a * d_in)
        rows.append(i)
        cols.append(a)
        vals.append(overlap / d_out)
    r, c, v = (np.concatenate(x) if x else np.zeros(0) for x in (rows, cols, vals))
    return sparse.csr_matrix((v, (r, c)), shape=(n_out, n_in))


def mask_on_grid(
    mask: np.ndarray, mask_downsample: int, grid_downsample: int, shape: tuple[int, int]
) -> np.ndarray:
    """Fraction of each cell of a map grid that is tumor in an expert mask.

    Args:
        mask: ``(hm, wm)`` array, non-zero = tumor; mask pixel ``(a, b)`` covers level-0 pixels
            ``[b·dm, (b+1)·dm) × [a·dm, (a+1)·dm)`` with ``dm = mask_downsample``.
        mask_downsample: level-0 pixels per mask pixel (integer).
        grid_downsample: level-0 pixels per grid cell (integer).
        shape: ``(h, w)`` of the grid in cells.

    Returns:
        ``(h, w)`` float32 in ``[0, 1]``: the tumor share of each cell's area. When the grid is coarser
        and ``grid_downsample`` is a multiple of ``mask_downsample`` this is the mean of the ``k × k``
        mask pixels in the cell (box resampling); when it is finer and ``mask_downsample`` is a multiple
        of ``grid_downsample`` each cell takes its mask pixel's value (replication, so 0 or 1); other
        ratios are exact area weighting. Parts of the grid the mask does not reach (ragged edges) count
        as non-tumor; mask pixels beyond the grid are ignored.

    Raises:
        ValueError: ``mask`` is not 2-D, a downsample is not a positive integer, or ``shape`` is not two
            non-negative integers.
    """
    dm = _positive_int("mask_downsample", mask_downsample)
    dg = _positive_int("grid_downsample", grid_downsample)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (h, w) array, got shape {mask.shape}")
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (h, w) integers, got {shape!r}") from None
    if h < 0 or w < 0:
        raise ValueError(f"shape must be non-negative, got {shape!r}")
    out = np.zeros((h, w), np.float32)
    if h == 0 or w == 0 or mask.size == 0:
        return out
    hm, wm = mask.shape

    if dg % dm == 0:  # coarser (or equal) grid: k × k box mean, slab by slab of grid rows
        k = dg // dm
        nr, nc = min(h, math.ceil(hm / k)), min(w, math.ceil(wm / k))
        rows = max(1, _SLAB_ELEMENTS // max(1, nc * k * k))
        for r0 in range(0, nr, rows):
            r1 = min(nr, r0 + rows)
            block = np.zeros(((r1 - r0) * k, nc * k), bool)  # zero padding = the mask's ragged edge
            src = mask[r0 * k : r1 * k, : nc * k] != 0
            block[: src.shape[0], : src.shape[1]] = src
            counts = block.reshape(r1 - r0, k, nc, k).sum(axis=(1, 3), dtype=np.int64)
            out[r0:r1, :nc] = counts / float(k * k)
        return out

    if dm % dg == 0:  # finer grid: each cell lies inside one mask pixel
        k = dm // dg
        ri = np.arange(h) // k
        ci = np.arange(w) // k
        nr, nc = int((ri < hm).sum()), int((ci < wm).sum())
        if nr and nc:
            out[:nr, :nc] = (mask[np.ix_(ri[:nr], ci[:nc])] != 0)
        return out

    # Neither divides the other: separable exact area weights (rare; e.g. masks at 12, maps at 16).
    wy = _axis_weights(h, dg, hm, dm)
    wx_t = _axis_weights(w, dg, wm, dm).T.tocsr()
    rows = max(1, _SLAB_ELEMENTS // max(1, wm))
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        sub = wy[r0:r1]
        used = np.unique(sub.indices)
        if used.size == 0:
            continue
        a0, a1 = int(used.min()), int(used.max()) + 1
        part = (mask[a0:a1] != 0).astype(np.float32)
        out[r0:r1] = np.asarray((sub[:, a0:a1] @ part) @ wx_t, dtype=np.float32)
    np.clip(out, 0.0, 1.0, out=out)  # float rounding of the weights must not leave [0, 1]
    return out


def _read_mask_image(path: Path) -> np.ndarray:
    """2-D array of a one-channel PNG or TIFF (level 0 of a pyramid); errors name the file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: expert mask not found")
    if not path.is_file():
        raise ValueError(f"{path}: expert mask is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                array = tif.pages[0].asarray()
        else:
            from PIL import Image

            # Masks of large slides at a fine downsample exceed Pillow's decompression-bomb limit;
            # a mask is the project's own input, not untrusted web content.
            limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                with Image.open(path) as image:
                    image.load()
                    if image.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
                        raise ValueError(
                            f"{path}: expert mask must have one channel (mode L, 1, P or I), got mode {image.mode}"
                        )
                    # Palette images: the palette index is the label (index 0 = background).
                    array = np.asarray(image)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except (FileNotFoundError, ValueError) as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read the expert mask ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # decoders raise many kinds; the caller needs the file named
        raise ValueError(f"{path}: cannot read the expert mask ({type(exc).__name__}: {exc})") from None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{path}: expert mask must be one-channel (h, w), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{path}: expert mask is empty")
    return array


def load_mask(
    record_or_path: SlideRecord | str | os.PathLike,
    slide_dimensions: tuple[int, int],
    *,
    slide_path: str | os.PathLike | None = None,
    annotation_downsample: int = 16,
) -> tuple[np.ndarray, int]:
    """Read an expert tumor mask and the integer downsample at which it covers its slide.

    Args:
        record_or_path: a :class:`~monai_wsseg.datasets.manifest.SlideRecord` with a ``mask``, or the mask's
            path (one-channel PNG or TIFF, non-zero = tumor; a pyramidal TIFF is read at its level 0), or a
            QuPath GeoJSON export (``.geojson`` / ``.json``, level-0 pixels) whose ``Tumor`` regions are tumor.
        slide_dimensions: level-0 ``(width, height)`` of the slide in pixels.
        slide_path: named in errors (taken from the record when one is given).
        annotation_downsample: level-0 pixels per mask pixel at which a GeoJSON mask is rasterised (pixel
            centres inside a region are tumor). Finer than the evaluation's cells, so that a cell's tumor
            fraction is measured as for a raster mask rather than decided by the cell's centre. A record of a
            normal slide (label 0) may hold no tumor region; a tumor slide's GeoJSON must.

    Returns:
        ``(mask, downsample)``: ``(hm, wm)`` uint8, 1 = tumor and 0 = not; level-0 pixels per mask pixel
        (see :func:`~monai_wsseg.datasets.masks.mask_downsample`).

    Raises:
        FileNotFoundError: the mask file does not exist.
        ValueError: the record has no mask, the file is not a readable one-channel image, or its size
            fits no integer downsample of the slide; the message starts with the mask path.
    """
    from monai_wsseg.datasets.masks import mask_downsample

    if hasattr(record_or_path, "mask") and hasattr(record_or_path, "slide"):
        record = record_or_path
        if record.mask is None:
            raise ValueError(f"{record.slide}: the record has no expert mask")
        path, slide_path = Path(record.mask), slide_path or record.slide
    else:
        path = Path(record_or_path)
    if path.suffix.lower() in (".geojson", ".json"):
        from monai_wsseg.datasets.annotations import load_annotation_mask

        normal = getattr(record_or_path, "label", None) == 0
        size = (int(slide_dimensions[0]), int(slide_dimensions[1]))
        mask = load_annotation_mask(path, size, annotation_downsample, allow_empty=normal)
        return mask, annotation_downsample
    array = _read_mask_image(path)
    h, w = array.shape
    sw, sh = slide_dimensions
    d = mask_downsample((w, h), (sw, sh), mask_path=path, slide_path=slide_path or "<slide>")
    return (array != 0).astype(np.uint8), d


# ---------------------------------------------------------------------------------------------------------
# confusion counts and threshold selection on histograms
# ---------------------------------------------------------------------------------------------------------
def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


@dataclass(frozen=True)
class Confusion:
    """Cell counts at one threshold (predicted tumor = quantised score ≥ threshold).

    Undefined ratios (a zero denominator, e.g. recall on a slide without tumor) are NaN.
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)`` (NaN without positives predicted)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)`` (NaN without positives in the truth)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """``2TP / (2TP + FP + FN)`` (NaN when both are empty)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def dice(self) -> float:
        """Pixel Dice, ``2TP / (2TP + FP + FN)``: identical to F1 on pixels."""
        return self.f1


def _cut(threshold: float, bins: int) -> int:
    """First histogram level counted as positive for ``score ≥ threshold`` (level ``k`` = ``k / (bins-1)``)."""
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN")
    # The small slack keeps t = k/(bins-1), computed in floating point, on level k.
    return min(bins, max(0, math.ceil(t * (bins - 1) - 1e-6)))


def _histograms(acc: AUCAccumulator | TumorMapAccumulator, with_background: bool) -> AUCAccumulator:
    if isinstance(acc, TumorMapAccumulator):
        return acc.all if with_background else acc.tissue
    if isinstance(acc, AUCAccumulator):
        return acc
    raise TypeError(f"expected an AUCAccumulator or TumorMapAccumulator, got {type(acc).__name__}")


def confusion_at(
    acc: AUCAccumulator | TumorMapAccumulator, threshold: float, *, with_background: bool = False
) -> Confusion:
    """TP/FP/FN/TN of the cells in ``acc`` for "tumor when score ≥ ``threshold``".

    For a :class:`TumorMapAccumulator` the tissue cells are counted unless ``with_background``.
    """
    h = _histograms(acc, with_background)
    k = _cut(threshold, h.bins)
    return Confusion(
        tp=int(h.pos[k:].sum()), fp=int(h.neg[k:].sum()), fn=int(h.pos[:k].sum()), tn=int(h.neg[:k].sum())
    )


def best_threshold(acc: AUCAccumulator | TumorMapAccumulator, *, with_background: bool = False) -> float:
    """The threshold that maximises F1 over the cells of ``acc``; ties go to the lowest threshold.

    Candidates are the histogram levels ``k / (bins - 1)`` (every distinct cut of quantised scores).
    For a :class:`TumorMapAccumulator` the tissue cells are used unless ``with_background``: this is
    "the threshold chosen on validation" when ``acc`` pools the validation slides.

    Raises:
        ValueError: ``acc`` lacks tumor cells or normal cells (no meaningful threshold).
    """
    h = _histograms(acc, with_background)
    n_pos, n_neg = int(h.pos.sum()), int(h.neg.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"cannot choose a threshold from {n_pos} tumor and {n_neg} normal cells: both classes are needed"
        )
    tp = np.cumsum(h.pos[::-1])[::-1]  # tp[k]: positives at levels ≥ k
    fp = np.cumsum(h.neg[::-1])[::-1]
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))  # denominator ≥ n_pos > 0
    k = int(np.argmax(f1))  # first maximum = lowest threshold
    return k / (h.bins - 1)


# ---------------------------------------------------------------------------------------------------------
# accumulator
# ---------------------------------------------------------------------------------------------------------
class TumorMapAccumulator:
    """Cell histograms of one slide or a pool of slides, with and without background.

    Attributes:
        all: :class:`AUCAccumulator` of every cell with a prediction ("with background").
        tissue: :class:`AUCAccumulator` of the tissue cells with a prediction ("without background").
        slides: number of slides added (merging adds them up).
    """

    def __init__(self, bins: int = 256) -> None:
        self.all = AUCAccumulator(bins)
        self.tissue = AUCAccumulator(bins)
        self.slides = 0

    @property
    def bins(self) -> int:
        """Histogram bins of the score accumulators."""
        return self.all.bins

    def update(self, scores: np.ndarray, truth: np.ndarray, tissue: np.ndarray | None = None) -> None:
        """Add one slide's map.

        Args:
            scores: ``(h, w)`` tumor scores in ``[0, 1]``, NaN = no prediction (skipped).
            truth: ``(h, w)``; bool / integer non-zero = tumor, or a float tumor fraction (tumor when
                ``≥`` :data:`TUMOR_FRACTION`, as :func:`mask_on_grid` returns).
            tissue: ``(h, w)`` bool tissue cells; ``None`` = every cell is tissue.
        """
        truth = np.asarray(truth)
        if np.issubdtype(truth.dtype, np.floating):
            truth = truth >= TUMOR_FRACTION
        scores = np.asarray(scores)
        if tissue is not None and np.shape(tissue) != scores.shape:
            raise ValueError(f"scores {scores.shape} and tissue {np.shape(tissue)} differ in shape")
        self.all.update(scores, truth)
        self.tissue.update(scores, truth, tissue)
        self.slides += 1

    def merge(self, other: TumorMapAccumulator) -> TumorMapAccumulator:
        """Add ``other``'s cells to this one (pooling); returns ``self``."""
        self.all.merge(other.all)
        self.tissue.merge(other.tissue)
        self.slides += other.slides
        return self

    def auc_with_background(self) -> float:
        """Pixel AUC over all cells with a prediction (NaN with a single class)."""
        return self.all.auc()

    def auc_without_background(self) -> float:
        """Pixel AUC over tissue cells (NaN with a single class)."""
        return self.tissue.auc()

    def confusion(self, threshold: float, *, with_background: bool = False) -> Confusion:
        """See :func:`confusion_at`."""
        return confusion_at(self, threshold, with_background=with_background)

    def summary(self, threshold: float) -> dict[str, float | int]:
        """Figures at ``threshold``: cell counts, both AUCs, and TP/FP/FN/TN, precision, recall, F1 and
        Dice (= F1) on tissue cells."""
        c = self.confusion(threshold)
        return {
            "slides": self.slides,
            "cells": int(self.all.pos.sum() + self.all.neg.sum()),
            "tumor_cells": int(self.all.pos.sum()),
            "tissue_cells": int(self.tissue.pos.sum() + self.tissue.neg.sum()),
            "tumor_tissue_cells": int(self.tissue.pos.sum()),
            "auc_with_background": self.auc_with_background(),
            "auc_without_background": self.auc_without_background(),
            "threshold": float(threshold),
            "tp": c.tp,
            "fp": c.fp,
            "fn": c.fn,
            "tn": c.tn,
            "precision": c.precision,
            "recall": c.recall,
            "f1": c.f1,
            "dice": c.dice,
        }
