"""Colour of a low-resolution rendering of a slide, as tissue and pen detection read it.

A thumbnail is smoothed into three float32 planes (:func:`smooth_planes`), from which come the HSV
saturation (:func:`saturation`), hue and value (:func:`hsv`) and the slide's own stain hue
(:func:`stain_hue`; a hue outside H&E's is a scanner or stain-batch cast, :func:`is_cast`). Used by
:mod:`monai_wsseg.wsi.tissue` and :mod:`monai_wsseg.wsi.pen`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "HE_HUES",
    "S_CEILING",
    "S_FLOOR",
    "Planes",
    "check_positive",
    "check_rgb",
    "hsv",
    "is_cast",
    "saturation",
    "smooth_planes",
    "stain_hue",
]

#: Bounds on the Otsu saturation threshold of tissue (:mod:`monai_wsseg.wsi.tissue`). Glass (white or
#: scanner-grey, tinted), dust and JPEG noise stay below ~0.09 after the 1 px smoothing; the palest H&E
#: stroma and fat rims in the reference images sit at 0.1-0.15, and on all of them the mask is the same
#: anywhere in this range. The floor keeps a blank slide blank (Otsu would split pure noise in half); the
#: ceiling keeps a slide that is almost all tissue (or ink) from being split into pale and dark tissue.
#: Pixels above the floor count as stained for :func:`stain_hue` too.
S_FLOOR = 0.10
S_CEILING = 0.15

#: Hues (degrees) of H&E stain at low resolution, hematoxylin purple to eosin pink; a slide whose own stain
#: hue lies outside them has a cast (:func:`is_cast`).
HE_HUES = (255.0, 355.0)


def check_rgb(rgb: np.ndarray) -> None:
    """ValueError unless ``rgb`` is a non-empty ``(H, W, 3)`` uint8 numpy array."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"rgb must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb is empty: shape {rgb.shape}")


def check_positive(name: str, value: float) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a positive finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def smooth_planes(rgb: np.ndarray | Planes, sigma: float = 1.0) -> Planes:
    """R, G, B as three contiguous (H, W) float32 planes in [0, 255], Gaussian blur of ``sigma`` px.

    At the default 1 px: pixel-level noise (sensor, JPEG blocks, dust) must not decide tissue on its
    own, and averaging over ~a dozen pixels removes it while moving tissue borders by under a pixel.
    Separate planes, because filtering an interleaved (H, W, 3) array strides through memory and
    takes twice as long.
    """
    if isinstance(rgb, np.ndarray):
        r, g, b = (np.ascontiguousarray(rgb[..., c], dtype=np.float32) for c in range(3))
        rgb = (r, g, b)
    return tuple(
        ndi.gaussian_filter(plane, sigma=sigma, mode="nearest", truncate=3.0) for plane in rgb
    )


def saturation(planes: Planes) -> np.ndarray:
    """(H, W) float32 HSV saturation, (max - min) / max, 0 where max = 0."""
    r, g, b = planes
    maxc = np.maximum(np.maximum(r, g), b)
    minc = np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = (maxc - minc) / maxc
    sat[maxc <= 0] = 0.0
    return sat


def hsv(planes: Planes) -> Planes:
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


def stain_hue(hue: np.ndarray, sat: np.ndarray, val: np.ndarray,
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


def is_cast(hue: float | None) -> bool:
    """Whether a stain hue lies outside H&E's (a grey-green or brown cast)."""
    return hue is not None and not HE_HUES[0] <= hue <= HE_HUES[1]
