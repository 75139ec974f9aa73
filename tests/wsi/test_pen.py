"""Pen ink on synthetic images: strokes found with their rim, H&E kept, the planes and RGB entry points
agree. The real pen images (HistoQC, TCGA) are read in test_tissue.py, whose masks must leave ink out."""

from __future__ import annotations

import numpy as np
import pytest

from monai_wsseg.wsi.colour import smooth_planes
from monai_wsseg.wsi.pen import pen_mask_from_planes, pen_mask_from_rgb

PINK, PURPLE = (205, 130, 185), (150, 90, 170)


def tissue_with_stroke(colour) -> np.ndarray:
    rgb = np.full((200, 200, 3), 242, np.uint8)
    rgb[20:180, 20:100] = PINK
    rgb[20:180, 100:180] = PURPLE
    rgb[90:110, 30:170] = colour  # a marker stroke across both stains
    return rgb


@pytest.mark.parametrize("colour", [(40, 170, 150), (30, 60, 200), (20, 20, 25)])  # green, blue, black
def test_strokes_are_ink_and_the_stains_are_not(colour):
    rgb = tissue_with_stroke(colour)
    pen = pen_mask_from_rgb(rgb, mpp=8.0)
    assert pen[92:108, 35:165].all()
    assert not pen[30:70].any() and not pen[130:175].any()  # H&E far from the stroke's rim
    np.testing.assert_array_equal(pen_mask_from_planes(smooth_planes(rgb), 8.0), pen)


def test_no_ink_on_plain_tissue():
    rgb = tissue_with_stroke(PINK)
    assert not pen_mask_from_rgb(rgb, mpp=8.0).any()


def test_bad_input_rejected():
    with pytest.raises(ValueError, match="uint8"):
        pen_mask_from_rgb(np.zeros((8, 8, 3), np.float32), mpp=8.0)
    with pytest.raises(ValueError, match="mpp"):
        pen_mask_from_rgb(np.zeros((8, 8, 3), np.uint8), mpp=0)
