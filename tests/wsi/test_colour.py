"""Colour planes of thumbnails: smoothing, HSV as skimage computes it, the slide's own stain hue and casts."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2hsv

from monai_wsseg.wsi.colour import (
    HE_HUES,
    check_positive,
    check_rgb,
    hsv,
    is_cast,
    saturation,
    smooth_planes,
    stain_hue,
)


def test_hsv_matches_skimage_in_degrees():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(64, 80, 3)).astype(np.uint8)
    rgb[0, :3] = [(0, 0, 0), (255, 255, 255), (128, 128, 128)]  # black, white, grey: no hue
    planes = tuple(rgb[..., c].astype(np.float32) for c in range(3))
    hue, sat, val = hsv(planes)
    ref = rgb2hsv(rgb)
    np.testing.assert_allclose(sat, ref[..., 1], atol=1e-5)
    np.testing.assert_allclose(val, ref[..., 2], atol=1e-5)
    np.testing.assert_allclose(saturation(planes), ref[..., 1], atol=1e-5)
    coloured = ref[..., 1] > 0
    diff = np.abs((hue[coloured] - 360 * ref[..., 0][coloured] + 180) % 360 - 180)
    assert diff.max() < 1e-2 and (hue >= 0).all() and (hue < 360).all()


def test_smoothing_keeps_flat_colour_and_planes():
    rgb = np.full((20, 30, 3), (200, 100, 50), np.uint8)
    planes = smooth_planes(rgb)
    assert len(planes) == 3 and all(p.dtype == np.float32 and p.shape == (20, 30) for p in planes)
    np.testing.assert_allclose([p.mean() for p in planes], [200, 100, 50], atol=1e-3)
    again = smooth_planes(planes, 2.0)  # planes in, planes out
    np.testing.assert_allclose(again[0], planes[0], atol=1e-3)


def test_stain_hue_of_pink_tissue_and_of_a_cast():
    pink = np.zeros((40, 40, 3), np.float32) + np.array([205, 130, 185], np.float32)
    hue, sat, val = hsv(tuple(pink[..., c] for c in range(3)))
    own = stain_hue(hue, sat, val)
    assert own is not None and HE_HUES[0] <= own <= HE_HUES[1] and not is_cast(own)
    green = np.zeros((40, 40, 3), np.float32) + np.array([150, 175, 140], np.float32)
    hue, sat, val = hsv(tuple(green[..., c] for c in range(3)))
    assert is_cast(stain_hue(hue, sat, val))
    glass = np.full((40, 40), 243, np.float32)
    assert stain_hue(*hsv((glass, glass, glass))) is None and not is_cast(None)


def test_input_checks_name_the_problem():
    with pytest.raises(ValueError, match="uint8"):
        check_rgb(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        check_rgb(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="mpp must be a positive finite number"):
        check_positive("mpp", float("inf"))
    assert check_positive("mpp", "2") == 2.0
