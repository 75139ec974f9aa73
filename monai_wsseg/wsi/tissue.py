"""Tissue masks from a low-resolution rendering of a whole-slide image.

A pixel is tissue when it is

* saturated: its HSV saturation exceeds an Otsu threshold computed on the slide itself, kept
  inside ``[S_FLOOR, S_CEILING]`` so that a blank slide (all glass) does not turn its noise into
  "tissue" and a slide that is mostly tissue is not split into pale and dark tissue;
* not white: paper A's rule, background when all of R, G and B exceed ``white_threshold``;
* not pen ink: green, blue, red / dark-red and black marker (:mod:`monai_wsseg.wsi.pen`);

then cleaned up in physical units: specks below ``min_object_um2`` are dropped and holes below
``min_hole_um2`` are filled (pen ink is never filled back in).

The result is a :class:`TissueMask`, which knows how mask pixels map to level-0 pixels and answers
"what fraction of this level-0 box is tissue" exactly (area-weighted, via a summed-area table), for
one box or millions at once. :mod:`monai_wsseg.wsi.grid` builds patch grids on top of it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_holes, remove_small_objects

from monai_wsseg.wsi.colour import (
    S_CEILING,
    S_FLOOR,
    check_positive,
    check_rgb,
    hsv,
    is_cast,
    saturation,
    smooth_planes,
    stain_hue,
)
from monai_wsseg.wsi.pen import pen_mask_from_planes

__all__ = [
    "SlideLike",
    "TissueMask",
    "compute_tissue_mask",
    "tissue_mask_from_rgb",
    "tissue_on_grid",
]

logger = logging.getLogger(__name__)


class SlideLike(Protocol):
    """What :func:`compute_tissue_mask` needs from a slide (``monai_wsseg.wsi.slide`` provides it)."""

    path: Any
    mpp: float
    dimensions: tuple[int, int]

    def thumbnail(self, mpp: float) -> np.ndarray:
        """The whole slide at ``mpp`` µm/px, ``(h, w, 3)`` uint8 RGB."""


def tissue_mask_from_rgb(
    rgb: np.ndarray,
    *,
    mpp: float,
    white_threshold: int = 220,
    min_object_um2: float = 10_000.0,
    min_hole_um2: float = 5_000.0,
    exclude_pen: bool = True,
) -> np.ndarray:
    """Tissue mask of a low-resolution H&E image.

    Args:
        rgb: (H, W, 3) uint8 image, typically a whole-slide thumbnail at 4-16 µm/px.
        mpp: microns per pixel of ``rgb`` (sets the morphology sizes).
        white_threshold: a pixel is background when all of R, G, B exceed it (0-255).
        min_object_um2: tissue pieces smaller than this area (µm²) are dropped (default 0.01 mm²,
            a 100 µm square, i.e. smaller than one 224 px patch at 0.5 µm/px).
        min_hole_um2: holes in tissue smaller than this area (µm²) are filled (lumens, fat cells,
            tears); holes left by pen ink are never filled.
        exclude_pen: drop marker ink (see :func:`pen_mask_from_rgb`).

    Returns:
        (H, W) bool mask, True = tissue.

    Raises:
        ValueError: ``rgb`` is not (H, W, 3) uint8, ``mpp`` is not positive, or a size is negative.
    """
    check_rgb(rgb)
    mpp = check_positive("mpp", mpp)
    if not isinstance(white_threshold, (int, float, np.number)) or not 0 <= white_threshold <= 255:
        raise ValueError(f"white_threshold must be a number in [0, 255], got {white_threshold!r}")
    for name, value in (("min_object_um2", min_object_um2), ("min_hole_um2", min_hole_um2)):
        if not isinstance(value, (int, float, np.number)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number of µm², got {value!r}")

    smooth = smooth_planes(rgb)
    sat = saturation(smooth)
    white = float(white_threshold)
    not_white = ~((smooth[0] > white) & (smooth[1] > white) & (smooth[2] > white))
    if exclude_pen:
        pen = pen_mask_from_planes(smooth, mpp)
    else:
        pen = np.zeros(sat.shape, bool)

    # Ink is strongly saturated; left in, it would drag Otsu up and split the tissue instead of
    # separating tissue from glass (TCGA red-pen thumbnail: 0.57 with the ink, 0.23 without).
    candidates = sat[~pen]
    if candidates.size == 0 or float(candidates.max() - candidates.min()) < 1e-6:
        threshold = S_FLOOR
    else:
        threshold = float(np.clip(threshold_otsu(candidates), S_FLOOR, S_CEILING))

    hue, _, val = hsv(smooth)
    if is_cast(stain_hue(hue, sat, val)):
        # A cast greys the stain: its saturation says little, but glass stays white.
        mask = not_white & ~pen
    else:
        mask = (sat > threshold) & not_white & ~pen

    px_area = mpp * mpp
    min_object_px = math.ceil(min_object_um2 / px_area)
    min_hole_px = math.ceil(min_hole_um2 / px_area)
    if min_object_px > 1:
        mask = remove_small_objects(mask, max_size=min_object_px - 1, connectivity=2)
    if min_hole_px > 1:
        mask = remove_small_holes(mask, max_size=min_hole_px - 1) & ~pen
    return mask


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A slide's tissue mask and how it maps onto level 0.

    Attributes:
        mask: (h, w) bool, True = tissue.
        mpp: microns per mask pixel.
        scale: (sx, sy), level-0 pixels per mask pixel along x and along y. Mask pixel (i, j)
            covers level-0 ``[i·sx, (i+1)·sx) × [j·sy, (j+1)·sy)``.
    """

    mask: np.ndarray
    mpp: float
    scale: tuple[float, float]
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or mask.shape[0] == 0 or mask.shape[1] == 0:
            raise ValueError(f"TissueMask.mask must be a non-empty (h, w) array, got shape {mask.shape}")
        mask = mask.astype(bool, copy=False)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "mpp", check_positive("TissueMask.mpp", self.mpp))
        if len(self.scale) != 2:
            raise ValueError(f"TissueMask.scale must be (sx, sy), got {self.scale!r}")
        sx = check_positive("TissueMask.scale[0]", self.scale[0])
        sy = check_positive("TissueMask.scale[1]", self.scale[1])
        object.__setattr__(self, "scale", (sx, sy))
        # Summed-area table with a zero first row and column: table[j, i] = mask[:j, :i].sum().
        # float64 holds these integer counts exactly (masks are far below 2**53 pixels) and is what
        # the interpolation needs, so no per-query conversion.
        table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.float64)
        np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1, out=table[1:, 1:])
        object.__setattr__(self, "_table", table)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the mask in mask pixels."""
        return self.mask.shape

    @property
    def fraction(self) -> float:
        """Fraction of mask pixels that are tissue, in [0, 1]."""
        return float(self._table[-1, -1]) / self.mask.size

    @property
    def level0_size(self) -> tuple[float, float]:
        """(width, height) of the area the mask covers, in level-0 pixels."""
        return self.mask.shape[1] * self.scale[0], self.mask.shape[0] * self.scale[1]

    def _axis_weights(self, coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Cell index and fractional offset of mask coordinates, clipped to [0, n]."""
        coord = np.clip(coord, 0.0, float(n))
        idx = np.minimum(np.floor(coord).astype(np.intp), n - 1)
        return idx, coord - idx

    def _integral(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Tissue area (mask px²) of [0, u) × [0, v) for broadcastable mask coordinates u, v.

        Within one mask pixel the integral of a piecewise-constant image is bilinear in (u, v), so
        bilinear interpolation of the summed-area table is exact, fractional pixels included.
        """
        h, w = self.mask.shape
        i, fu = self._axis_weights(np.asarray(u, np.float64), w)
        j, fv = self._axis_weights(np.asarray(v, np.float64), h)
        s = self._table
        top = s[j, i] * (1 - fu) + s[j, i + 1] * fu
        bottom = s[j + 1, i] * (1 - fu) + s[j + 1, i + 1] * fu
        return top * (1 - fv) + bottom * fv

    def region_fraction(self, x: Any, y: Any, w: Any, h: Any) -> np.ndarray | float:
        """Tissue fraction of level-0 boxes ``[x, x + w) × [y, y + h)``.

        Args:
            x, y: top-left corners in level-0 pixels (scalars or broadcastable arrays).
            w, h: box width and height in level-0 pixels (> 0).

        Returns:
            Area-weighted tissue fraction in [0, 1], a float for scalar input, else an array of the
            broadcast shape. Parts of a box outside the mask count as background.
        """
        x, y, w, h = (np.asarray(a, np.float64) for a in (x, y, w, h))
        if np.any(w <= 0) or np.any(h <= 0):
            raise ValueError("region_fraction: box width and height must be > 0")
        sx, sy = self.scale
        u0, u1, v0, v1 = x / sx, (x + w) / sx, y / sy, (y + h) / sy
        area = (w / sx) * (h / sy)
        inside = (
            self._integral(u1, v1) - self._integral(u0, v1) - self._integral(u1, v0) + self._integral(u0, v0)
        )
        frac = np.clip(inside / area, 0.0, 1.0)
        return float(frac) if frac.ndim == 0 else frac

    def iter_grid_fraction(
        self, xs: np.ndarray, ys: np.ndarray, w: float, h: float, *, max_cells: int = 1 << 22
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Tissue fraction of every box of a regular grid, a block of grid rows at a time.

        Args:
            xs: (nx,) level-0 left edges.
            ys: (ny,) level-0 top edges.
            w, h: box size in level-0 pixels (> 0).
            max_cells: bound on the temporary arrays per block (elements), so memory stays small
                however dense the grid.

        Yields:
            ``(r0, block)``: block is (rows, nx) float64, entry [r, c] for the box at
            ``(xs[c], ys[r0 + r])``; blocks cover the rows in order.
        """
        if not (w > 0 and h > 0):
            raise ValueError("grid_fraction: box width and height must be > 0")
        xs = np.asarray(xs, np.float64).ravel()
        ys = np.asarray(ys, np.float64).ravel()
        sx, sy = self.scale
        hm, wm = self.mask.shape
        s = self._table
        area = (w / sx) * (h / sy)
        i0, f0 = self._axis_weights(xs / sx, wm)
        i1, f1 = self._axis_weights((xs + w) / sx, wm)
        j0_all, g0_all = self._axis_weights(ys / sy, hm)
        j1_all, g1_all = self._axis_weights((ys + h) / sy, hm)
        rows_per_block = max(1, int(max_cells) // max(wm + 1, len(xs), 1))
        # The table is bilinear within each cell, so it can be interpolated along y at the boxes'
        # top and bottom edges first ((rows, w+1) strip) and along x second ((rows, nx)): exact,
        # and never one temporary per (box, corner).
        for r0 in range(0, len(ys), rows_per_block):
            r1 = min(r0 + rows_per_block, len(ys))
            j0, g0 = j0_all[r0:r1], g0_all[r0:r1, None]
            j1, g1 = j1_all[r0:r1], g1_all[r0:r1, None]
            strip = (s[j1] * (1 - g1) + s[j1 + 1] * g1) - (s[j0] * (1 - g0) + s[j0 + 1] * g0)
            inside = (strip[:, i1] * (1 - f1) + strip[:, i1 + 1] * f1) - (
                strip[:, i0] * (1 - f0) + strip[:, i0 + 1] * f0
            )
            yield r0, np.clip(inside / area, 0.0, 1.0)

    def grid_fraction(self, xs: np.ndarray, ys: np.ndarray, w: float, h: float) -> np.ndarray:
        """Tissue fraction of every box of a regular grid, exact and vectorised.

        Args:
            xs: (nx,) level-0 left edges.
            ys: (ny,) level-0 top edges.
            w, h: box size in level-0 pixels (> 0).

        Returns:
            (ny, nx) float64, entry [r, c] for the box at (xs[c], ys[r]).
        """
        nx = np.asarray(xs).size
        blocks = [block for _, block in self.iter_grid_fraction(xs, ys, w, h)]
        return np.concatenate(blocks) if blocks else np.zeros((0, nx), np.float64)


def compute_tissue_mask(slide: SlideLike, *, mpp: float = 8.0, **kwargs: Any) -> TissueMask:
    """Tissue mask of a whole slide, computed on a rendering at ``mpp`` µm/px.

    Args:
        slide: an opened slide (``path``, ``mpp``, ``dimensions``, ``thumbnail(mpp)``).
        mpp: resolution of the mask in microns per pixel (coarser than the slide's level 0).
        **kwargs: passed to :func:`tissue_mask_from_rgb` (``white_threshold``, ``min_object_um2``,
            ``min_hole_um2``, ``exclude_pen``).

    Returns:
        A :class:`TissueMask` whose scale maps the mask exactly onto the slide's level-0 size. A
        slide without tissue gives an all-False mask and a warning naming the slide.

    Raises:
        ValueError: ``mpp`` is not positive, or the thumbnail is not (h, w, 3) uint8.
    """
    path = getattr(slide, "path", "<slide>")
    mpp = check_positive("mpp", mpp)
    thumb = np.asarray(slide.thumbnail(mpp))
    try:
        mask = tissue_mask_from_rgb(thumb, mpp=mpp, **kwargs)
    except ValueError as err:
        raise ValueError(f"{path}: tissue mask at {mpp} µm/px: {err}") from err
    width, height = slide.dimensions
    h, w = mask.shape
    tissue = TissueMask(mask=mask, mpp=mpp, scale=(width / w, height / h))
    if not mask.any():
        message = f"{path}: no tissue found (tissue mask at {mpp} µm/px is empty)"
        logger.warning(message)
        warnings.warn(message, stacklevel=2)
    return tissue


def tissue_on_grid(tissue: TissueMask, downsample: int, shape: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` bool: map cells (``downsample`` level-0 px each) at least half covered by tissue."""
    h, w = shape
    out = np.zeros((h, w), bool)
    xs = np.arange(w, dtype=np.float64) * downsample
    ys = np.arange(h, dtype=np.float64) * downsample
    # Block by block: a float64 fraction grid of a large slide's map would be hundreds of MB.
    for r0, block in tissue.iter_grid_fraction(xs, ys, downsample, downsample):
        out[r0 : r0 + block.shape[0]] = block >= 0.5
    return out
