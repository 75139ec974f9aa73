"""Overlay PNGs: heat map or class colours over the slide's thumbnail, a legend, exact registration."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monai_wsseg.inference.engine import SlideMap
from monai_wsseg.io import overlay, write_overlay_png
from monai_wsseg.wsi.slide import open_slide
from tests.io.maps import (
    SLIDE_H,
    SLIDE_MPP,
    SLIDE_W,
    D,
    leftovers,
    one_class_map,
    three_class_map,
)


def thumbnail_for(slide_path, max_size: int) -> np.ndarray:
    slide = open_slide(slide_path)
    return slide.thumbnail(slide.mpp * max(slide.dimensions) / max_size)


def test_overlay_heatmap_has_legend_and_colours(tmp_path, slide_path):
    smap = one_class_map(str(slide_path))
    out = write_overlay_png(tmp_path / "o.png", smap, slide_path, class_names=["tumor"], max_size=500)
    img = np.asarray(Image.open(out).convert("RGB"))
    thumb = thumbnail_for(slide_path, 500)
    th, tw = thumb.shape[:2]
    assert max(th, tw) == 500
    assert img.shape[1] > tw + 40 and img.shape[0] >= th  # a legend margin on the right
    part, margin = img[:th, :tw].astype(int), img[:, tw:].astype(int)
    assert part.std() > 10  # not blank
    # no-data columns (cells 0..9 = thumbnail x < 20) show the slide unchanged; the disc is tinted red
    assert np.array_equal(part[:, :19], thumb[:, :19])
    cy, cx = 50 * D * th // SLIDE_H, 60 * D * tw // SLIDE_W  # the disc's centre, p = 0.9
    heat = overlay._heat_lut()[round(0.9 * 255)]
    assert np.abs(part[cy, cx] - (0.55 * thumb[cy, cx] + 0.45 * heat)).max() <= 3
    assert part[cy, cx, 0] > part[cy, cx, 2] + 30  # red end of the scale
    # the colour bar's ends and dark text sit in the margin
    flat = margin.reshape(-1, 3)
    for color in (overlay._HEAT_ANCHORS[0], overlay._HEAT_ANCHORS[-1]):
        assert (np.abs(flat - color).max(axis=1) <= 3).any()
    assert (flat.max(axis=1) < 60).sum() > 50


def test_overlay_threshold_paints_exactly_the_positive_cells(tmp_path, slide_path):
    smap = one_class_map(str(slide_path))
    out = write_overlay_png(tmp_path / "t.png", smap, str(slide_path), class_names=["tumor"],
                            colors=[(0, 0, 255)], max_size=500, threshold=0.5, alpha=0.5)
    img = np.asarray(Image.open(out).convert("RGB")).astype(float)
    thumb = thumbnail_for(slide_path, 500).astype(float)
    th, tw = thumb.shape[:2]
    part = img[:th, :tw]
    positive = smap.probabilities[0] >= 0.5
    # thumbnail pixels are 2 um, cells 4 um: cell (i, j) covers pixels (2i..2i+1, 2j..2j+1)
    at_thumb = np.repeat(np.repeat(positive, 2, axis=0), 2, axis=1)[:th, :tw]
    inside = ndimage.binary_erosion(at_thumb, iterations=2)
    outside = ndimage.binary_erosion(~at_thumb, iterations=2)
    expected = 0.5 * thumb + 0.5 * np.array([0, 0, 255])
    assert inside.sum() > 1000
    assert np.abs(part[inside] - expected[inside]).max() <= 1
    assert np.abs(part[outside] - thumb[outside]).max() == 0
    margin = img[:, tw:].reshape(-1, 3)
    assert (np.abs(margin - [0, 0, 255]).max(axis=1) == 0).sum() > 20  # the swatch


def test_overlay_multiclass_colours_every_class(tmp_path, slide_path):
    smap, cls = three_class_map(str(slide_path))
    colors = [(255, 255, 0), (255, 0, 0), (0, 200, 0)]
    out = write_overlay_png(tmp_path / "m.png", smap, None, class_names=["bg", "tumor", "stroma"],
                            colors=colors, max_size=250, alpha=1.0)
    img = np.asarray(Image.open(out).convert("RGB"))
    th, tw = 188, 250  # 4 um per thumbnail pixel = one cell per pixel (the last row half a cell)
    for k, color in enumerate(colors):
        where = ndimage.binary_erosion(cls == k)[: th - 1]
        assert (img[: th - 1, :tw][where] == color).all(), k
        assert (np.abs(img[:, tw:].reshape(-1, 3).astype(int) - color).max(axis=1) == 0).sum() > 20, k


def test_overlay_rejects_a_map_of_another_slide(tmp_path, slide_path):
    smap = SlideMap(str(slide_path), np.zeros((1, 10, 10), dtype=np.float32), D, SLIDE_MPP * D)
    with pytest.raises(ValueError, match="is it the map of this slide"):
        write_overlay_png(tmp_path / "o.png", smap, slide_path, class_names=["x"])
    with pytest.raises(ValueError, match="alpha"):
        write_overlay_png(tmp_path / "o.png", one_class_map(str(slide_path)), slide_path, class_names=["x"],
                          alpha=2)
    assert leftovers(tmp_path) == []


def test_overlay_registers_partial_last_cells(tmp_path, slide_path):
    # At 64 px per cell the last column holds only 16 px of slide: stretching the whole map over the
    # thumbnail would shift the right edge by ~2 % of the width.
    d = 64
    h, w = -(-SLIDE_H // d), -(-SLIDE_W // d)
    p = np.zeros((1, h, w), dtype=np.float32)
    p[0, :, 28:] = 1.0  # level-0 x >= 1792 → thumbnail x >= 448 at 500 px
    smap = SlideMap(str(slide_path), p, d, SLIDE_MPP * d)
    out = write_overlay_png(tmp_path / "edge.png", smap, slide_path, class_names=["x"], colors=[(0, 255, 0)],
                            threshold=0.5, alpha=1.0, max_size=500)
    row = np.asarray(Image.open(out).convert("RGB"))[200]
    assert (row[449:500] == (0, 255, 0)).all() and not (row[440:447] == (0, 255, 0)).all(axis=1).any()
