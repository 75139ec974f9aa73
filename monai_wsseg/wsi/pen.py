"""Pen / marker ink in a low-resolution H&E image: green, blue, red / dark red and black marker.

Hue / saturation / value rules tuned against HistoQC's annotated pen masks and TCGA thumbnails (H&E pink
and purple are kept), read on colour averaged over :data:`PEN_SMOOTH_UM`; a stroke's faint rim is followed
from its core for :data:`PEN_HALO_UM`. Ink must differ in hue from the slide's own stain, so a second lab's
bluer haematoxylin or a scanner's cast is not read as marker. :mod:`monai_wsseg.wsi.tissue` leaves ink out
of the tissue.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from monai_wsseg.wsi.colour import (
    Planes,
    check_positive,
    check_rgb,
    hsv,
    is_cast,
    smooth_planes,
    stain_hue,
)

__all__ = [
    "CAST_HUE_TOLERANCE",
    "PEN_HALO_UM",
    "PEN_SMOOTH_UM",
    "VIVID_INK_SATURATION",
    "pen_mask_from_planes",
    "pen_mask_from_rgb",
]

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


#: Pixels within this hue distance (degrees) of the slide's own stain hue are ink only when vivid.
CAST_HUE_TOLERANCE = 20.0
#: Saturation from which a pixel near the stain's own hue is still marker ink.
VIVID_INK_SATURATION = 0.5


def pen_mask_from_planes(smooth: Planes, mpp: float) -> np.ndarray:
    """(H, W) bool pen mask from the 1 px-smoothed R, G, B planes of an image at ``mpp`` µm/px."""
    sigma = PEN_SMOOTH_UM / mpp
    if sigma > 1.0:
        # Gaussians compose: sigma_total² = 1² + extra², so start from the image we already have.
        smooth = smooth_planes(smooth, math.sqrt(sigma * sigma - 1.0))
    hue, sat, val = hsv(smooth)
    strict = _pen_rules(hue, sat, val, loose=False)
    if not strict.any():
        return strict
    loose = _pen_rules(hue, sat, val, loose=True) | strict
    # Ink must differ in hue from the slide's own stain: a second lab's bluer haematoxylin (hue ~255) or
    # a scanner's cast would otherwise be read as blue or green marker over the whole tissue. Pixels near
    # the slide's own haematoxylin hue (or, on a cast slide, its stain hue) are ink only when vivid; red ink
    # stays as it was, eosin's hue being too close to red to loosen anything there.
    own = stain_hue(hue, sat, val)
    if own is not None:
        anchor: float | None
        if is_cast(own):
            anchor = own
        else:
            anchor = stain_hue(hue, sat, val, hues=(200.0, 300.0))  # the haematoxylin
        if anchor is not None:
            near = np.abs((hue - anchor + 180.0) % 360.0 - 180.0) < CAST_HUE_TOLERANCE
            near &= (val >= 0.45) & (sat < VIVID_INK_SATURATION)  # black ink keeps its darkness rule
            strict &= ~near
            loose &= ~near
    steps = max(1, round(PEN_HALO_UM / mpp))
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
    check_rgb(rgb)
    return pen_mask_from_planes(smooth_planes(rgb), check_positive("mpp", mpp))
