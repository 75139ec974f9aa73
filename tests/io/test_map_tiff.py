"""Pyramidal map TIFFs: OpenSlide and tiffslide read them over the slide; label maps; clear errors."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
import tifffile
import tiffslide

from monai_wsseg.inference.engine import SlideMap
from monai_wsseg.io import NO_DATA_LABEL, write_map_tiff
from monai_wsseg.wsi.slide import open_slide
from tests.io.maps import (
    MAP_H,
    MAP_W,
    SLIDE_MPP,
    D,
    leftovers,
    one_class_map,
    three_class_map,
)


def test_map_tiff_overlays_the_slide_in_openslide_and_tiffslide(tmp_path, slide_path):
    rng = np.random.default_rng(0)
    p = rng.random((1, MAP_H, MAP_W)).astype(np.float32)
    p[0, 50:80, 100:140] = np.nan
    p[0, 0, :3] = (0.0, 1.0, 0.5 / 255)
    smap = SlideMap(str(slide_path), p, D, SLIDE_MPP * D)
    out = write_map_tiff(tmp_path / "map.tif", smap)
    expected = np.rint(np.nan_to_num(p[0].astype(np.float64), nan=0.0) * 255).astype(np.uint8)

    with openslide.OpenSlide(str(out)) as osl:
        assert osl.dimensions == (MAP_W, MAP_H)
        assert float(osl.properties["openslide.mpp-x"]) == pytest.approx(SLIDE_MPP * D, rel=1e-6)
        assert float(osl.properties["openslide.mpp-y"]) == pytest.approx(SLIDE_MPP * D, rel=1e-6)
        rgba = np.asarray(osl.read_region((0, 0), 0, (MAP_W, MAP_H)))
    assert np.array_equal(rgba[..., 0], expected)
    assert rgba[50:80, 100:140, 0].max() == 0  # no data → 0
    with tiffslide.TiffSlide(out) as tsl:
        assert tsl.dimensions == (MAP_W, MAP_H)
        assert float(tsl.properties["tiffslide.mpp-x"]) == pytest.approx(SLIDE_MPP * D, rel=1e-6)
        region = np.asarray(tsl.read_region((0, 0), 0, (MAP_W, MAP_H)))
    assert np.array_equal(region[..., 0] if region.ndim == 3 else region, expected)
    # the map's physical extent covers the slide, with less than one cell to spare
    slide = open_slide(slide_path)
    for cells, pixels in ((MAP_W, slide.dimensions[0]), (MAP_H, slide.dimensions[1])):
        assert (cells - 1) * SLIDE_MPP * D < pixels * slide.mpp <= cells * SLIDE_MPP * D
    with tifffile.TiffFile(out) as tf:
        assert all(page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE for page in tf.pages)


def test_map_tiff_is_a_pyramid_for_large_maps(tmp_path):
    p = np.random.default_rng(1).random((2, 700, 1100)).astype(np.float32)
    out = write_map_tiff(tmp_path / "big.tiff", SlideMap("s.svs", p, 4, 1.0), channel=1)
    with openslide.OpenSlide(str(out)) as osl:
        assert osl.level_count >= 2
        assert osl.level_downsamples[1] == pytest.approx(2.0, rel=0.01)
        assert float(osl.properties["openslide.mpp-x"]) == pytest.approx(1.0)
    assert np.array_equal(tifffile.imread(out), np.rint(p[1].astype(np.float64) * 255).astype(np.uint8))
    # the slide's own mpp, when given, sets the tag (the map's rounded mpp is ignored)
    out = write_map_tiff(tmp_path / "big.tiff", SlideMap("s.svs", p, 4, 1.0), channel=0, slide_mpp=0.2527)
    with tiffslide.TiffSlide(out) as tsl:
        assert float(tsl.properties["tiffslide.mpp-x"]) == pytest.approx(0.2527 * 4, rel=1e-6)


def test_map_tiff_label_map(tmp_path, slide_path):
    smap, cls = three_class_map(str(slide_path))
    out = write_map_tiff(tmp_path / "labels.tif", smap, label_map=True)
    labels = tifffile.imread(out)
    assert labels.dtype == np.uint8 and labels.shape == (MAP_H, MAP_W)
    assert np.array_equal(labels, np.where(cls < 0, NO_DATA_LABEL, cls))
    with tiffslide.TiffSlide(out) as tsl:
        assert float(tsl.properties["tiffslide.mpp-x"]) == pytest.approx(SLIDE_MPP * D)

    one = one_class_map(str(slide_path))
    labels = tifffile.imread(write_map_tiff(tmp_path / "binary.tif", one, label_map=True, threshold=0.75))
    p = one.probabilities[0]
    assert np.array_equal(labels, np.where(np.isnan(p), 255, (p >= 0.75).astype(np.uint8)))
    assert set(np.unique(labels)) == {0, 1, 255}


def test_label_map_pyramid_keeps_valid_labels(tmp_path):
    cls = np.random.default_rng(2).integers(0, 4, size=(900, 1200))
    p = np.zeros((4, 900, 1200), dtype=np.float32)
    np.put_along_axis(p, cls[None], 1.0, axis=0)
    out = write_map_tiff(tmp_path / "l.tif", SlideMap("s", p, 2, 1.0), label_map=True)
    with tifffile.TiffFile(out) as tf:
        assert len(tf.pages) >= 2
        assert set(np.unique(tf.pages[1].asarray())) <= {0, 1, 2, 3}  # nearest, never averaged


def test_map_tiff_rejects_bad_input(tmp_path, slide_path):
    smap, _ = three_class_map(str(slide_path))
    with pytest.raises(ValueError, match=r"map\.tif.*3 channels"):
        write_map_tiff(tmp_path / "map.tif", smap)
    with pytest.raises(ValueError, match="channel"):
        write_map_tiff(tmp_path / "map.tif", smap, channel=3)
    logits = SlideMap("s", np.full((1, 4, 4), 3.0, dtype=np.float32), 2, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_map_tiff(tmp_path / "map.tif", logits)
    with pytest.raises(ValueError, match="downsample"):
        write_map_tiff(tmp_path / "map.tif", SlideMap("s", np.zeros((1, 4, 4), np.float32), 0, 1.0))
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        write_map_tiff(tmp_path / "map.tif", SlideMap("s", np.zeros((4, 4), np.float32), 2, 1.0))
    with pytest.raises(ValueError, match=r"\.tif"):
        write_map_tiff(tmp_path / "map.png", SlideMap("s", np.zeros((1, 4, 4), np.float32), 2, 1.0))
    assert leftovers(tmp_path) == []
