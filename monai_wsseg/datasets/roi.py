"""Regions of interest: drawn regions (a manifest's ``roi`` column) that limit inference and evaluation.

A pathologist circles the part of a slide that matters (one tissue fragment of several, the region a
study is about) in QuPath and exports it as GeoJSON in level-0 pixels. Every Polygon / MultiPolygon of the
file counts, whatever its class. The regions are rasterised onto the grid of the slide's tissue mask
(:class:`~monai_wsseg.wsi.tissue.TissueMask`) and combined with it, so everything downstream that keeps to
tissue — which tiles are read, which map cells are scored — keeps to the tissue inside the regions.
"""

from __future__ import annotations

import math
import os

import numpy as np

from monai_wsseg.datasets.annotations import rasterise_annotations, read_annotations
from monai_wsseg.wsi.tissue import TissueMask

__all__ = ["inside", "restrict_to_roi", "roi_mask"]


def roi_mask(path: str | os.PathLike, slide_size: tuple[int, int], like: TissueMask) -> TissueMask:
    """The regions of ``path`` on the grid of ``like`` (same shape, mpp and scale).

    A grid pixel is inside when its centre is: the regions are filled at the largest integer downsample
    not coarser than the grid (at least 1 level-0 px) and sampled at the grid pixels' centres.

    Args:
        path: GeoJSON file of regions in level-0 pixels (QuPath export; every class counts).
        slide_size: level-0 ``(width, height)`` of the slide in pixels.
        like: the tissue mask whose grid the result takes.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed file, no region in it, or regions entirely outside the slide (the message
            starts with the file and names the feature).
    """
    polygons = read_annotations(path, classes=None)
    sx, sy = like.scale
    d = max(1, math.floor(min(sx, sy)))
    fine = rasterise_annotations(polygons, slide_size, d).astype(bool)
    h, w = like.mask.shape
    rows = np.minimum(((np.arange(h) + 0.5) * sy / d).astype(np.int64), fine.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * sx / d).astype(np.int64), fine.shape[1] - 1)
    return TissueMask(fine[np.ix_(rows, cols)], like.mpp, like.scale)


def restrict_to_roi(
    tissue: TissueMask, path: str | os.PathLike | None, slide_size: tuple[int, int]
) -> TissueMask:
    """``tissue`` kept to the regions of ``path`` (unchanged when ``path`` is None); see :func:`roi_mask`."""
    return tissue if path is None else inside(tissue, roi_mask(path, slide_size, tissue))


def inside(tissue: TissueMask, roi: TissueMask) -> TissueMask:
    """The tissue of ``tissue`` inside ``roi`` (a :func:`roi_mask` on the same grid)."""
    return TissueMask(tissue.mask & roi.mask, tissue.mpp, tissue.scale)
