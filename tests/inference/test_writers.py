"""Map writers: pyramidal TIFF, PNG overlay, GeoJSON polygons, NIfTI; atomic output and clear errors."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import openslide
import pytest
import shapely
import tifffile
import tiffslide
from PIL import Image
from scipy import ndimage
from shapely.geometry import shape

from monai_wsseg.inference import writers
from monai_wsseg.inference.engine import SlideMap
from monai_wsseg.inference.writers import (
    NO_DATA_LABEL,
    map_polygons,
    write_geojson,
    write_map_tiff,
    write_nifti,
    write_overlay_png,
)
from monai_wsseg.wsi.slide import open_slide
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import smooth_rgb

SLIDE_W, SLIDE_H, SLIDE_MPP = 2000, 1500, 0.5
D = 8  # level-0 pixels per map cell
MAP_H, MAP_W = -(-SLIDE_H // D), -(-SLIDE_W // D)  # 188 x 250; the last row is half outside the slide


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    write_pyramidal_tiff(path, smooth_rgb(SLIDE_H, SLIDE_W, seed=7), SLIDE_MPP)
    return path


def cell_grid() -> tuple[np.ndarray, np.ndarray]:
    """Column and row index of every map cell, ``(MAP_H, MAP_W)`` each."""
    return np.meshgrid(np.arange(MAP_W), np.arange(MAP_H))


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    x, y = cell_grid()
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def one_class_map(slide: str) -> SlideMap:
    """A disc, a ring with a hole, a block in the slide's bottom-right corner, and no-data columns."""
    p = np.full((MAP_H, MAP_W), 0.1, dtype=np.float32)
    p[disc(60, 50, 25)] = 0.9
    p[disc(170, 100, 30) & ~disc(170, 100, 12)] = 0.8
    p[170:, 230:] = 0.7
    p[:, :10] = np.nan
    return SlideMap(slide, p[None], D, SLIDE_MPP * D)


def three_class_map(slide: str) -> tuple[SlideMap, np.ndarray]:
    """Background / tumor / stroma: a stroma ring whose hole holds a background lake with a tumor island."""
    cls = np.zeros((MAP_H, MAP_W), dtype=np.int64)
    cls[disc(120, 90, 45) & ~disc(120, 90, 20)] = 2
    cls[disc(120, 90, 10)] = 1
    cls[disc(40, 40, 15)] = 1
    p = np.full((3, MAP_H, MAP_W), 0.15, dtype=np.float32)
    np.put_along_axis(p, cls[None], 0.7, axis=0)
    p[:, :, 240:] = np.nan
    cls[:, 240:] = -1
    return SlideMap(slide, p, D, SLIDE_MPP * D), cls


def rasterise(geometries, shape_hw: tuple[int, int], d: int, dims: tuple[int, int] | None) -> np.ndarray:
    """Cells whose centre (of the part inside the slide) lies in any of the geometries."""
    h, w = shape_hw
    w0, h0 = dims if dims else (w * d, h * d)
    xs = (np.arange(w) * d + np.minimum((np.arange(w) + 1) * d, w0)) / 2
    ys = (np.arange(h) * d + np.minimum((np.arange(h) + 1) * d, h0)) / 2
    gx, gy = np.meshgrid(xs, ys)
    out = np.zeros(shape_hw, dtype=bool)
    for g in geometries:
        out |= shapely.contains_xy(g, gx, gy)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------ TIFF
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


# --------------------------------------------------------------------------------------------- GeoJSON
def test_geojson_is_valid_qupath_and_rasterises_back(tmp_path, slide_path):
    smap = one_class_map(str(slide_path))
    out = write_geojson(tmp_path / "map.geojson", smap, class_names=["tumor"], colors=[(200, 0, 0)],
                        min_area_cells=1)
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == 3  # disc, ring, corner block
    geoms = []
    for feature in doc["features"]:
        assert feature["type"] == "Feature"
        assert feature["properties"] == {"objectType": "annotation",
                                         "classification": {"name": "tumor", "color": [200, 0, 0]}}
        assert feature["geometry"]["type"] == "Polygon"
        for ring in feature["geometry"]["coordinates"]:
            assert ring[0] == ring[-1] and len(ring) >= 5
        g = shape(feature["geometry"])
        assert g.is_valid, shapely.is_valid_reason(g)
        assert g.exterior.is_ccw and not any(r.is_ccw for r in g.interiors)  # RFC 7946 in numeric x/y
        geoms.append(g)
    # level-0 pixels: everything inside the slide, the corner block reaching its corner exactly
    bounds = np.array([g.bounds for g in geoms])
    assert bounds[:, :2].min() >= 0 and bounds[:, 2].max() == SLIDE_W and bounds[:, 3].max() == SLIDE_H
    expected = smap.probabilities[0] >= 0.5
    back = rasterise(geoms, (MAP_H, MAP_W), D, (SLIDE_W, SLIDE_H))
    assert iou(back, expected) >= 0.95
    assert np.array_equal(back, expected)  # cell-edge tracing is exact
    # the ring keeps its hole: one interior, and the ring's centre is not covered
    ring = [g for g in geoms if len(g.interiors) == 1]
    assert len(ring) == 1
    assert not ring[0].contains(shapely.Point(170.5 * D, 100.5 * D))
    assert ring[0].area == pytest.approx((disc(170, 100, 30) & ~disc(170, 100, 12)).sum() * D * D)


def test_geojson_coordinates_are_level0_cell_edges(tmp_path):
    p = np.zeros((1, 40, 60), dtype=np.float32)
    p[0, 10:20, 30:40] = 1.0
    polys = map_polygons(SlideMap("nowhere.tif", p, 16, 8.0), class_names=["x"])
    assert len(polys) == 1
    name, rings = polys[0]
    assert name == "x" and len(rings) == 1
    assert sorted(map(tuple, rings[0][:-1].tolist())) == [(480, 160), (480, 320), (640, 160), (640, 320)]


@pytest.mark.parametrize(
    "cells, n_polygons, n_holes",
    [
        ([[1, 0], [0, 1]], 2, 0),  # two regions touching at a corner: two polygons, not a bow tie
        ([[1, 1, 1], [1, 0, 1], [1, 1, 0]], 1, 1),  # a hole touching the outline at a corner stays a hole
        ([[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]], 2, 1),  # island
        ([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]], 2, 0),  # island touching a corner inside
        ([[0, 1, 0], [1, 0, 1], [0, 1, 0]], 4, 0),
    ],
)
def test_pinched_shapes_give_valid_exact_polygons(cells, n_polygons, n_holes):
    mask = np.array(cells, dtype=bool)
    smap = SlideMap("nowhere.tif", mask[None].astype(np.float32), 3, 1.5)
    polys = map_polygons(smap, class_names=["x"], min_area_cells=1)
    geoms = [shapely.Polygon(rings[0], rings[1:]) for _, rings in polys]
    assert len(geoms) == n_polygons
    assert sum(len(g.interiors) for g in geoms) == n_holes
    assert all(g.is_valid for g in geoms), [shapely.is_valid_reason(g) for g in geoms]
    assert shapely.MultiPolygon(geoms).is_valid
    assert np.array_equal(rasterise(geoms, mask.shape, 3, None), mask)


def test_random_masks_trace_exactly():
    rng = np.random.default_rng(3)
    for trial in range(60):
        h, w = rng.integers(1, 40, size=2)
        if trial % 2:
            mask = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        else:
            mask = ndimage.gaussian_filter(rng.random((h, w)), 1.5) > 0.5
        p = mask[None].astype(np.float32)
        p[0, rng.random((h, w)) < 0.05] = np.nan
        mask &= ~np.isnan(p[0])
        polys = map_polygons(SlideMap("nowhere.tif", p, 2, 1.0), class_names=["x"], min_area_cells=1)
        geoms = [shapely.Polygon(rings[0], rings[1:]) for _, rings in polys]
        assert all(g.is_valid for g in geoms), trial
        if geoms:
            assert shapely.MultiPolygon(geoms).is_valid, trial
        assert np.array_equal(rasterise(geoms, mask.shape, 2, None), mask), trial


def test_geojson_multiclass_island_in_lake(tmp_path, slide_path):
    smap, cls = three_class_map(str(slide_path))
    out = write_geojson(tmp_path / "tissue.json", smap, class_names=["background", "tumor", "stroma"],
                        ignore_classes=["background"], min_area_cells=1)
    features = json.loads(out.read_text())["features"]
    names = [f["properties"]["classification"]["name"] for f in features]
    assert sorted(names) == ["stroma", "tumor", "tumor"]
    for f in features:
        assert len(f["properties"]["classification"]["color"]) == 3
    geoms = {name: [shape(f["geometry"]) for f in features if f["properties"]["classification"]["name"] == name]
             for name in ("tumor", "stroma")}
    ious = {}
    for k, name in ((1, "tumor"), (2, "stroma")):
        assert all(g.is_valid for g in geoms[name])
        back = rasterise(geoms[name], (MAP_H, MAP_W), D, (SLIDE_W, SLIDE_H))
        ious[name] = iou(back, cls == k)
    assert min(ious.values()) >= 0.95, ious
    assert min(ious.values()) == 1.0, ious
    (stroma,) = geoms["stroma"]
    assert len(stroma.interiors) == 1
    island = max(geoms["tumor"], key=lambda g: g.centroid.x)
    assert shapely.Polygon(stroma.interiors[0]).contains(island) and not stroma.intersects(island.centroid)

    merged = write_geojson(tmp_path / "merged.geojson", smap, class_names=["background", "tumor", "stroma"],
                           ignore_classes=["background"], merge=True, object_type="detection")
    features = json.loads(merged.read_text())["features"]
    assert len(features) == 2
    for f in features:
        assert f["geometry"]["type"] == "MultiPolygon" and f["properties"]["objectType"] == "detection"
        assert shape(f["geometry"]).is_valid


def test_min_area_drops_specks_and_fills_pinholes():
    p = np.zeros((1, 30, 30), dtype=np.float32)
    p[0, 5:20, 5:20] = 1.0
    p[0, 10, 10] = 0.0  # a one-cell pinhole
    p[0, 12:16, 12:16] = 0.0  # a real hole of 16 cells
    p[0, 25, 25] = 1.0  # a speck
    polys = map_polygons(SlideMap("nowhere.tif", p, 1, 1.0), class_names=["x"], min_area_cells=4)
    assert len(polys) == 1 and len(polys[0].rings) == 2
    assert shapely.Polygon(polys[0].rings[0], polys[0].rings[1:]).area == 15 * 15 - 16
    exact = map_polygons(SlideMap("nowhere.tif", p, 1, 1.0), class_names=["x"], min_area_cells=1)
    assert len(exact) == 2 and len(exact[0].rings) == 3


def test_polygons_of_an_empty_map_and_bad_arguments(tmp_path):
    empty = SlideMap("nowhere.tif", np.full((1, 5, 5), np.nan, dtype=np.float32), 2, 1.0)
    assert map_polygons(empty, class_names=["x"]) == []
    out = write_geojson(tmp_path / "empty.geojson", empty, class_names=["x"])
    assert json.loads(out.read_text()) == {"type": "FeatureCollection", "features": []}
    with pytest.raises(ValueError, match="2 class names"):
        write_geojson(tmp_path / "a.geojson", empty, class_names=["x", "y"])
    with pytest.raises(ValueError, match="object_type"):
        write_geojson(tmp_path / "a.geojson", empty, class_names=["x"], object_type="cell")
    with pytest.raises(ValueError, match="colours"):
        write_geojson(tmp_path / "a.geojson", empty, class_names=["x"], colors=[(300, 0, 0)])
    with pytest.raises(ValueError, match="ignore_classes"):
        map_polygons(empty, class_names=["x"], ignore_classes=["y"])
    assert leftovers(tmp_path) == ["empty.geojson"]


# ------------------------------------------------------------------------------------------------- PNG
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
    heat = writers._heat_lut()[round(0.9 * 255)]
    assert np.abs(part[cy, cx] - (0.55 * thumb[cy, cx] + 0.45 * heat)).max() <= 3
    assert part[cy, cx, 0] > part[cy, cx, 2] + 30  # red end of the scale
    # the colour bar's ends and dark text sit in the margin
    flat = margin.reshape(-1, 3)
    for color in (writers._HEAT_ANCHORS[0], writers._HEAT_ANCHORS[-1]):
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


# ----------------------------------------------------------------------------------------------- NIfTI
def test_nifti_spacing_and_values(tmp_path, slide_path):
    smap, _ = three_class_map(str(slide_path))
    out = write_nifti(tmp_path / "map.nii.gz", smap)
    img = nib.load(str(out))
    assert img.shape == (MAP_W, MAP_H, 1, 3)
    assert img.header.get_zooms()[:2] == pytest.approx((SLIDE_MPP * D / 1000,) * 2)
    assert img.header.get_xyzt_units()[0] == "mm"
    data = np.asarray(img.dataobj)
    np.testing.assert_array_equal(data[:, :, 0, :], np.transpose(smap.probabilities, (2, 1, 0)))


# ------------------------------------------------------------------------------- atomic output, errors
def writer_calls(slide_path):
    one = one_class_map(str(slide_path))
    return {
        "tif": lambda path: write_map_tiff(path.with_suffix(".tif"), one),
        "png": lambda path: write_overlay_png(path.with_suffix(".png"), one, slide_path, class_names=["t"],
                                              max_size=300),
        "geojson": lambda path: write_geojson(path.with_suffix(".geojson"), one, class_names=["t"]),
        "nii": lambda path: write_nifti(path.with_suffix(".nii.gz"), one),
    }


@pytest.mark.parametrize("kind", ["tif", "png", "geojson", "nii"])
def test_unwritable_output_folder_is_a_clear_error(tmp_path, slide_path, monkeypatch, kind):
    write = writer_calls(slide_path)[kind]
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(ValueError, match=r"afile.*not a folder"):
        write(afile / "out")
    with pytest.raises(ValueError, match="does not exist"):
        write(tmp_path / "missing" / "out")
    # a read-only folder (root ignores permission bits, so the access check is faked)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(ValueError, match="not writable"):
        write(tmp_path / "out")
    assert leftovers(tmp_path) == ["afile"]


def test_write_failure_is_reported_as_not_writable(tmp_path, slide_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(writers, "open", denied, raising=False)
    with pytest.raises(ValueError, match=r"out\.geojson.*not writable"):
        writer_calls(slide_path)["geojson"](tmp_path / "out")
    assert leftovers(tmp_path) == []


def _partial_then_fail(path, text=b"partial"):
    with open(path, "wb") as f:
        f.write(text)
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("kind", ["tif", "png", "geojson", "nii"])
def test_failure_midway_leaves_no_partial_file(tmp_path, slide_path, monkeypatch, kind):
    calls = writer_calls(slide_path)
    final = {"tif": "out.tif", "png": "out.png", "geojson": "out.geojson", "nii": "out.nii.gz"}[kind]
    calls[kind](tmp_path / "out")  # a finished earlier run, which a failed rerun must not spoil
    before = (tmp_path / final).read_bytes()
    if kind == "tif":
        real = tifffile.TiffWriter.write
        count = {"pages": 0}

        def write_page(self, *args, **kwargs):
            count["pages"] += 1
            if count["pages"] > 1:
                raise RuntimeError("disk went away")
            return real(self, *args, **kwargs)

        # a 3-level pyramid: the first page is written, the second fails
        calls[kind] = lambda path: write_map_tiff(
            path.with_suffix(".tif"), SlideMap("s", np.zeros((1, 1200, 1200), np.float32), 1, 1.0))
        monkeypatch.setattr(tifffile.TiffWriter, "write", write_page)
        error = RuntimeError
    elif kind == "png":
        monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **k: _partial_then_fail(fp))
        error = OSError
    elif kind == "geojson":
        real_open = open

        class Failing:
            def __init__(self, path, *args, **kwargs):
                self.f = real_open(path, *args, **kwargs)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, text):
                self.f.write(text[: len(text) // 2])
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(writers, "open", Failing, raising=False)
        error = OSError
    else:
        monkeypatch.setattr(nib, "save", lambda img, fp: _partial_then_fail(fp))
        error = OSError
    with pytest.raises(error) as info:
        calls[kind](tmp_path / "out")
    if error is OSError:
        assert final in str(info.value)  # the message names the output, not only the temporary file
    assert leftovers(tmp_path) == [final]  # no temporary file left behind
    assert (tmp_path / final).read_bytes() == before


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
