"""Tissue masks from a low-resolution rendering of a whole-slide image.

A pixel is tissue when it is

* saturated: its HSV saturation exceeds an Otsu threshold computed on the slide itself, kept
  inside ``[S_FLOOR, S_CEILING]`` so that a blank slide (all glass) does not turn its noise into
  "tissue" and a slide that is mostly tissue is not split into pale and dark tissue;
* not white: paper A's rule, background when all of R, G and B exceed ``white_threshold``;
* not pen ink: green, blue, red / dark-red and black marker (hue / saturation / value rules tuned
  against HistoQC's annotated pen masks and TCGA thumbnails; H&E pink and purple are kept);

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
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_holes, remove_small_objects

__all__ = [
    "tissue_on_grid",
    "S_CEILING",
    "S_FLOOR",
    "SlideLike",
    "TissueMask",
    "compute_tissue_mask",
    "pen_mask_from_rgb",
    "tissue_mask_from_rgb",
]

logger = logging.getLogger(__name__)

#: Bounds on the Otsu saturation threshold. Glass (white or scanner-grey, tinted), dust and JPEG
#: noise stay below ~0.09 after the 1 px smoothing; the palest H&E stroma and fat rims in the
#: reference images sit at 0.1-0.15, and on all of them the mask is the same anywhere in this range.
#: The floor keeps a blank slide blank (Otsu would split pure noise in half); the ceiling keeps a
#: slide that is almost all tissue (or ink) from being split into pale and dark tissue.
S_FLOOR = 0.10
S_CEILING = 0.15


class SlideLike(Protocol):
    """What :func:`compute_tissue_mask` needs from a slide (``monai_wsseg.wsi.slide`` provides it)."""

    path: Any
    mpp: float
    dimensions: tuple[int, int]

    def thumbnail(self, mpp: float) -> np.ndarray: ...


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"rgb must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb is empty: shape {rgb.shape}")


def _check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def _smooth(rgb: np.ndarray | Planes, sigma: float = 1.0) -> Planes:
    """R, G, B as three contiguous (H, W) float32 planes in [0, 255], Gaussian blur of ``sigma`` px.

    At the default 1 px: pixel-level noise (sensor, JPEG blocks, dust) must not decide tissue on its
    own, and averaging over ~a dozen pixels removes it while moving tissue borders by under a pixel.
    Separate planes, because filtering an interleaved (H, W, 3) array strides through memory and
    takes twice as long.
    """
    if isinstance(rgb, np.ndarray):
        rgb = tuple(np.ascontiguousarray(rgb[..., c], dtype=np.float32) for c in range(3))  # type: ignore[assignment]
    return tuple(  # type: ignore[return-value]
        ndi.gaussian_filter(plane, sigma=sigma, mode="nearest", truncate=3.0) for plane in rgb
    )


def _saturation(planes: Planes) -> np.ndarray:
    """(H, W) float32 HSV saturation, (max - min) / max, 0 where max = 0."""
    r, g, b = planes
    maxc = np.maximum(np.maximum(r, g), b)
    minc = np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = (maxc - minc) / maxc
    sat[maxc <= 0] = 0.0
    return sat


def _hsv(planes: Planes) -> Planes:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of float R, G, B planes in [0, 255].

    Written out in float32 rather than ``skimage.color.rgb2hsv`` (float64, reductions over the
    channel axis): several times faster on the 3000² thumbnails of large slides.
    """
    r, g, b = planes
    maxc = np.maximum(np.maximum(r, g), b)
    delta = maxc - np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = delta / maxc
        inv = np.float32(60.0) / delta
    sat[maxc <= 0] = 0.0
    inv[delta <= 0] = 0.0
    hue = (r - g) * inv + np.float32(240.0)
    green_max = maxc == g
    hue[green_max] = ((b - r) * inv + np.float32(120.0))[green_max]
    red_max = maxc == r
    hue[red_max] = ((g - b) * inv)[red_max]
    hue[hue < 0] += np.float32(360.0)
    return hue, sat, maxc / np.float32(255.0)


#: Pen rules look at colour averaged over this scale (µm, Gaussian sigma). Marker strokes are
#: 0.3-1 mm wide and keep their colour when averaged; at 2-8 µm/px single dark nuclei clusters or
#: bright eosin fibres would otherwise pass for black or red ink.
PEN_SMOOTH_UM = 25.0

#: How far (µm) a pen stroke's faint rim is followed from its core: the ink's blurred edge and thin
#: streaks beside a stroke are pen too, but we must not walk through eosin-rich tissue.
PEN_HALO_UM = 50.0


def _pen_rules(hue: np.ndarray, sat: np.ndarray, val: np.ndarray, *, loose: bool) -> np.ndarray:
    """Marker ink from HSV planes (hue in degrees [0, 360), saturation and value in [0, 1]).

    H&E lives at hue ~260-350 (hematoxylin purple to eosin pink) with moderate saturation; the
    strict rules only take colours H&E cannot produce, or H&E hues at saturations / darkness it does
    not reach at thumbnail resolution. The loose rules describe the diluted rim of a stroke and are
    only applied next to strict ink.
    """
    if not loose:
        # Green / teal marker: a hue H&E never has.
        green = (hue >= 70) & (hue < 200) & (sat >= 0.12) & (val < 0.96)
        # Blue marker: vivid blue; hematoxylin is bluish but far less saturated at low resolution.
        blue = (hue >= 190) & (hue < 265) & (sat >= 0.30)
        # Red / dark-red marker: pure red hues (eosin is magenta-pink, hue < ~345) at saturations
        # eosin does not reach, plus the pinker but denser strokes seen on HistoQC's red pen.
        red = (((hue >= 345) | (hue < 20)) & (sat >= 0.40)) | ((hue >= 335) & (sat >= 0.55))
        # Black marker: darker than any H&E stain at thumbnail resolution, whatever its tint.
        black = val < 0.30
    else:
        green = (hue >= 60) & (hue < 210) & (sat >= 0.06) & (val < 0.98)
        blue = (hue >= 180) & (hue < 270) & (sat >= 0.15)
        red = ((hue >= 330) | (hue < 25)) & (sat >= 0.30)
        black = val < 0.45
    return green | blue | red | black


#: Hues (degrees) of H&E stain at low resolution, hematoxylin purple to eosin pink (see _pen_rules).
HE_HUES = (255.0, 355.0)
#: Otherwise pixels within this hue distance (degrees) of the slide's own stain hue are ink only when vivid.
CAST_HUE_TOLERANCE = 20.0
#: Saturation from which a pixel near the stain's own hue is still marker ink.
VIVID_INK_SATURATION = 0.5


def _stain_hue(hue: np.ndarray, sat: np.ndarray, val: np.ndarray,
               hues: tuple[float, float] | None = None) -> float | None:
    """The slide's own stain hue: circular mean over moderately saturated, not-white, not-black pixels
    (only those with hue in ``hues`` when given); ``None`` when too few or no one hue dominates. Marker
    ink of the opposite hue (green ink on pink tissue) cancels in the mean rather than dragging it."""
    stained = (sat > S_FLOOR) & (sat < 0.6) & (val < 0.92) & (val >= 0.45)
    if hues is not None:
        stained &= (hue >= hues[0]) & (hue < hues[1])
    if stained.sum() < 100:
        return None
    rad = np.deg2rad(hue[stained])
    c, s = float(np.cos(rad).mean()), float(np.sin(rad).mean())
    if math.hypot(c, s) < 0.5:  # no one hue (noise, a mix of inks): no stain hue to trust
        return None
    return float(np.rad2deg(np.arctan2(s, c)) % 360.0)


def _is_cast(hue: float | None) -> bool:
    """Whether a stain hue lies outside H&E's (a grey-green or brown cast)."""
    return hue is not None and not HE_HUES[0] <= hue <= HE_HUES[1]


def _pen_from_smooth(smooth: Planes, mpp: float) -> np.ndarray:
    """(H, W) bool pen mask from the 1 px-smoothed R, G, B planes of an image at ``mpp`` µm/px."""
    sigma = PEN_SMOOTH_UM / mpp
    if sigma > 1.0:
        # Gaussians compose: sigma_total² = 1² + extra², so start from the image we already have.
        smooth = _smooth(smooth, math.sqrt(sigma * sigma - 1.0))
    hue, sat, val = _hsv(smooth)
    strict = _pen_rules(hue, sat, val, loose=False)
    if not strict.any():
        return strict
    loose = _pen_rules(hue, sat, val, loose=True) | strict
    # Ink must differ in hue from the slide's own stain: a second lab's bluer haematoxylin (hue ~255) or
    # a scanner's cast would otherwise be read as blue or green marker over the whole tissue. Pixels near
    # the slide's own haematoxylin hue (or, on a cast slide, its stain hue) are ink only when vivid; red ink
    # stays as it was, eosin's hue being too close to red to loosen anything there.
    own = _stain_hue(hue, sat, val)
    if own is not None:
        if _is_cast(own):
            anchor = own
        else:
            anchor = _stain_hue(hue, sat, val, hues=(200.0, 300.0))  # the haematoxylin
        if anchor is not None:
            near = np.abs((hue - anchor + 180.0) % 360.0 - 180.0) < CAST_HUE_TOLERANCE
            near &= (val >= 0.45) & (sat < VIVID_INK_SATURATION)  # black ink keeps its darkness rule
            strict &= ~near
            loose &= ~near
    steps = max(1, int(round(PEN_HALO_UM / mpp)))
    # Geodesic growth: strict ink spreads only through loose-ink pixels, at most `steps` pixels.
    pen = ndi.binary_dilation(strict, structure=np.ones((3, 3), bool), iterations=steps, mask=loose)
    # One more pixel unconditionally: the anti-aliased outermost rim matches neither rule set.
    return ndi.binary_dilation(pen, structure=np.ones((3, 3), bool))


def pen_mask_from_rgb(rgb: np.ndarray, *, mpp: float) -> np.ndarray:
    """Pen / marker ink in a low-resolution H&E image.

    Args:
        rgb: (H, W, 3) uint8 image.
        mpp: microns per pixel of ``rgb`` (sets how far a stroke's faint rim is followed).

    Returns:
        (H, W) bool mask, True = ink (green, blue, red / dark red or black marker).
    """
    _check_rgb(rgb)
    return _pen_from_smooth(_smooth(rgb), _check_positive("mpp", mpp))


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
    _check_rgb(rgb)
    mpp = _check_positive("mpp", mpp)
    if not isinstance(white_threshold, (int, float, np.number)) or not 0 <= white_threshold <= 255:
        raise ValueError(f"white_threshold must be a number in [0, 255], got {white_threshold!r}")
    for name, value in (("min_object_um2", min_object_um2), ("min_hole_um2", min_hole_um2)):
        if not isinstance(value, (int, float, np.number)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number of µm², got {value!r}")

    smooth = _smooth(rgb)
    sat = _saturation(smooth)
    white = float(white_threshold)
    not_white = ~((smooth[0] > white) & (smooth[1] > white) & (smooth[2] > white))
    if exclude_pen:
        pen = _pen_from_smooth(smooth, mpp)
    else:
        pen = np.zeros(sat.shape, bool)

    # Ink is strongly saturated; left in, it would drag Otsu up and split the tissue instead of
    # separating tissue from glass (TCGA red-pen thumbnail: 0.57 with the ink, 0.23 without).
    candidates = sat[~pen]
    if candidates.size == 0 or float(candidates.max() - candidates.min()) < 1e-6:
        threshold = S_FLOOR
    else:
        threshold = float(np.clip(threshold_otsu(candidates), S_FLOOR, S_CEILING))

    hue, _, val = _hsv(smooth)
    if _is_cast(_stain_hue(hue, sat, val)):
        # A cast greys the stain: its saturation says little, but glass stays white.
        mask = not_white & ~pen
    else:
        mask = (sat > threshold) & not_white & ~pen

    px_area = mpp * mpp
    min_object_px = int(math.ceil(min_object_um2 / px_area))
    min_hole_px = int(math.ceil(min_hole_um2 / px_area))
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
        object.__setattr__(self, "mpp", _check_positive("TissueMask.mpp", self.mpp))
        if len(self.scale) != 2:
            raise ValueError(f"TissueMask.scale must be (sx, sy), got {self.scale!r}")
        sx = _check_positive("TissueMask.scale[0]", self.scale[0])
        sy = _check_positive("TissueMask.scale[1]", self.scale[1])
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
        return self.mask.shape  # type: ignore[return-value]

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
    mpp = _check_positive("mpp", mpp)
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
