"""mask_on_grid, load_mask and the tumor-map accumulator against hand-computed cases."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tifffile
from PIL import Image

from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.metrics.auc import AUCAccumulator
from monai_wsseg.metrics.tumor_maps import (
    Confusion,
    TumorMapAccumulator,
    best_threshold,
    confusion_at,
    load_mask,
    mask_on_grid,
)


# ------------------------------------------------------------------------------------------ mask_on_grid
def test_coarser_grid_is_the_box_mean():
    mask = np.array(
        [
            [1, 1, 0, 0, 1, 0],
            [1, 0, 0, 0, 1, 1],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0, 0],
        ],
        np.uint8,
    ) * 255
    got = mask_on_grid(mask, 4, 8, (2, 3))  # 2 × 2 mask pixels per cell
    np.testing.assert_array_equal(got, [[0.75, 0.0, 0.75], [0.0, 1.0, 0.0]])
    assert got.dtype == np.float32


def test_coarser_grid_with_ragged_edges_pads_with_zero_and_crops():
    mask = np.ones((3, 5), bool)  # a mask rounded down: the last half cells are missing
    got = mask_on_grid(mask, 1, 2, (2, 3))
    np.testing.assert_array_equal(got, [[1.0, 1.0, 0.5], [0.5, 0.5, 0.25]])
    # a mask larger than the grid: the extra pixels are ignored
    np.testing.assert_array_equal(mask_on_grid(np.ones((9, 9)), 1, 2, (2, 2)), np.ones((2, 2)))


def test_finer_grid_replicates_mask_pixels():
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    got = mask_on_grid(mask, 4, 2, (4, 4))
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]], np.float32)
    np.testing.assert_array_equal(got, expected)
    # ragged: the grid reaches one cell past the mask on both sides
    got = mask_on_grid(mask, 4, 2, (5, 5))
    np.testing.assert_array_equal(got[:4, :4], expected)
    assert not got[4].any() and not got[:, 4].any()
    # equal downsamples: the mask itself
    np.testing.assert_array_equal(mask_on_grid(mask, 16, 16, (2, 2)), mask.astype(np.float32))


def test_non_dividing_downsamples_weigh_by_area():
    # mask at 2 px: level-0 columns are [1, 1, 0, 0, 0, 0]; cells of 3 px: 2/3 and 0
    mask = np.tile([1, 0, 0], (3, 1))
    np.testing.assert_allclose(mask_on_grid(mask, 2, 3, (2, 2)), [[2 / 3, 0], [2 / 3, 0]], atol=1e-6)


@pytest.mark.parametrize("dm, dg", [(1, 4), (4, 1), (2, 6), (6, 2), (2, 3), (3, 2), (4, 4), (5, 3), (3, 7)])
def test_matches_level0_rendering(dm, dg):
    rng = np.random.default_rng(dm * 10 + dg)
    mask = rng.random((7, 9)) < 0.4
    h, w = 7 * dm // dg + 1, 9 * dm // dg + 2  # one row / two columns past the mask: ragged
    level0 = np.zeros((h * dg, w * dg))
    full = np.repeat(np.repeat(mask, dm, 0), dm, 1)[: h * dg, : w * dg]
    level0[: full.shape[0], : full.shape[1]] = full
    expected = level0.reshape(h, dg, w, dg).mean(axis=(1, 3))
    np.testing.assert_allclose(mask_on_grid(mask, dm, dg, (h, w)), expected, atol=1e-6)


def test_mask_on_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mask_downsample"):
        mask_on_grid(np.zeros((2, 2)), 0, 2, (1, 1))
    with pytest.raises(ValueError, match="grid_downsample"):
        mask_on_grid(np.zeros((2, 2)), 2, 1.5, (1, 1))
    with pytest.raises(ValueError, match="2-D"):
        mask_on_grid(np.zeros((2, 2, 3)), 2, 2, (1, 1))


# ------------------------------------------------------------------------------------------ load_mask
def test_load_mask_png_tiff_and_palette(tmp_path):
    arr = np.zeros((64, 48), np.uint8)
    arr[10:20, 5:9] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    mask, d = load_mask(tmp_path / "m.png", (768, 1024))
    assert d == 16 and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1} and mask.sum() == 40

    tifffile.imwrite(tmp_path / "m.tif", arr[:, :, None] // 255)
    mask, d = load_mask(tmp_path / "m.tif", (48 * 16 - 7, 64 * 16 - 7))  # slide size not a multiple of d
    assert d == 16 and mask.sum() == 40

    pal = Image.fromarray((arr // 255).astype(np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)  # both indices drawn black: the index decides
    pal.save(tmp_path / "p.png")
    record = SlideRecord(tmp_path / "s.tif", 1, "test", tmp_path / "p.png", "c")
    mask, d = load_mask(record, (768, 1024))
    assert d == 16 and mask.sum() == 40


def test_load_mask_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("nope.png")):
        load_mask(tmp_path / "nope.png", (100, 100))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png.*one channel"):
        load_mask(tmp_path / "rgb.png", (128, 128))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"junk\.png: cannot read"):
        load_mask(tmp_path / "junk.png", (128, 128))
    Image.fromarray(np.zeros((10, 30), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"wide\.png.*aspect ratio"):
        load_mask(tmp_path / "wide.png", (1000, 1000))
    with pytest.raises(ValueError, match=r"s\.tif: the record has no expert mask"):
        load_mask(SlideRecord(tmp_path / "s.tif", 0, "test", None, "c"), (100, 100))


# ------------------------------------------------------------------------------------------ accumulator
def _built_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue: tumor 0.8, 0.4 and normal 0.6, 0.2; glass: four normal cells at 0.0 and one no-data cell."""
    scores = np.array([[0.8, 0.4, 0.6, 0.2, 0.0, 0.0, 0.0, 0.0, np.nan]])
    truth = np.array([[1, 1, 0, 0, 0, 0, 0, 0, 1]], bool)
    tissue = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 1]], bool)
    return scores, truth, tissue


def test_auc_with_background_is_higher_on_easy_glass():
    acc = TumorMapAccumulator()
    acc.update(*_built_case())
    # tissue: 0.8 beats 0.6 and 0.2, 0.4 beats 0.2 only → 3/4
    assert acc.auc_without_background() == pytest.approx(3 / 4)
    # glass adds four negatives at 0: 0.8 beats all 6, 0.4 beats 5 → 11/12
    assert acc.auc_with_background() == pytest.approx(11 / 12)
    s = acc.summary(0.5)
    assert (s["cells"], s["tumor_cells"], s["tissue_cells"], s["tumor_tissue_cells"]) == (8, 2, 4, 2)


def test_confusion_precision_recall_dice_by_hand():
    acc = TumorMapAccumulator()
    acc.update(*_built_case())
    c = acc.confusion(0.5)
    assert c == Confusion(tp=1, fp=1, fn=1, tn=1)
    assert (c.precision, c.recall, c.f1, c.dice) == (0.5, 0.5, 0.5, 0.5)
    assert acc.confusion(0.5, with_background=True) == Confusion(1, 1, 1, 5)
    c = confusion_at(acc, 0.3)
    assert c == Confusion(tp=2, fp=1, fn=0, tn=1)
    assert c.precision == pytest.approx(2 / 3) and c.recall == 1.0 and c.f1 == pytest.approx(0.8)
    assert c.dice == c.f1
    # a threshold at a level is inclusive; above every score nothing is positive
    assert confusion_at(acc, 0.8) == Confusion(1, 0, 1, 2)
    assert confusion_at(acc, 1.0).tp == 0 and math.isnan(confusion_at(acc, 1.0).precision)
    # a normal slide predicted all normal: precision, recall and F1 are undefined
    normal = TumorMapAccumulator()
    normal.update(np.array([[0.1, 0.2]]), np.zeros((1, 2), bool))
    s = normal.summary(0.5)
    assert s["tn"] == 2 and all(math.isnan(s[k]) for k in ("precision", "recall", "f1", "dice"))
    assert math.isnan(s["auc_with_background"]) and math.isnan(s["auc_without_background"])


def test_best_threshold_maximises_f1():
    acc = TumorMapAccumulator()
    acc.update(*_built_case())
    # cuts: (0.6, 0.8] → F1 2/3; (0.4, 0.6] → 1/2; (0.2, 0.4] → 4/5; ≤ 0.2 → 2/3
    t = best_threshold(acc)
    assert t == pytest.approx(52 / 255)  # the lowest level above 0.2 (= level 51)
    assert confusion_at(acc, t).f1 == pytest.approx(0.8)
    # with background the same cut wins here (glass at 0 is below it)
    assert best_threshold(acc, with_background=True) == pytest.approx(52 / 255)


def test_best_threshold_ties_go_to_the_lowest():
    # tumor 0.9, 0.5; normal 0.7, 0.6: cut (0.7, 0.9] → F1 2/3 and cut ≤ 0.5 → F1 4/6 tie
    raw = AUCAccumulator()
    raw.update(np.array([0.9, 0.5, 0.7, 0.6]), np.array([1, 1, 0, 0]))
    assert best_threshold(raw) == 0.0
    assert confusion_at(raw, 0.0).f1 == pytest.approx(2 / 3)


def test_best_threshold_needs_both_classes():
    acc = TumorMapAccumulator()
    acc.update(np.array([[0.2, 0.9]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="both classes"):
        best_threshold(acc)


def test_pooling_adds_cells():
    scores, truth, tissue = _built_case()
    a, b, whole = TumorMapAccumulator(), TumorMapAccumulator(), TumorMapAccumulator()
    a.update(scores[:, :4], truth[:, :4], tissue[:, :4])
    b.update(scores[:, 4:], truth[:, 4:].astype(np.float32), tissue[:, 4:])  # float truth: fraction ≥ 0.5
    whole.update(scores, truth, tissue)
    pooled = TumorMapAccumulator().merge(a).merge(b)
    assert pooled.slides == 2
    assert pooled.summary(0.5) == {**whole.summary(0.5), "slides": 2}


def _qupath_export(path, rectangles, name="Tumor"):
    """A QuPath-style FeatureCollection of axis-aligned rectangles ``(x0, y0, x1, y1)`` in level-0 pixels."""
    import json

    features = [{"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": name}},
                 "geometry": {"type": "Polygon",
                              "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
                for x0, y0, x1, y1 in rectangles]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_a_qupath_geojson_mask_scores_as_the_equivalent_png(tmp_path):
    slide_size, d = (640, 480), 16
    rectangles = [(32, 48, 240, 160), (320, 320, 608, 464)]
    raster = np.zeros((480 // d, 640 // d), np.uint8)
    for x0, y0, x1, y1 in rectangles:
        raster[y0 // d:y1 // d, x0 // d:x1 // d] = 255
    png = tmp_path / "mask.png"
    Image.fromarray(raster).save(png)
    geojson = _qupath_export(tmp_path / "mask.geojson", rectangles)
    from_png, d_png = load_mask(png, slide_size)
    from_geojson, d_geojson = load_mask(geojson, slide_size)
    assert d_png == d_geojson == d and from_geojson.sum() > 0
    np.testing.assert_array_equal(from_geojson, from_png)
    for grid in (8, 32, 48):  # finer, coarser and not a multiple: the same tumor fractions per cell
        shape = (math.ceil(480 / grid), math.ceil(640 / grid))
        expected = mask_on_grid(from_png, d, grid, shape)
        np.testing.assert_array_equal(mask_on_grid(from_geojson, d, grid, shape), expected)


def test_a_geojson_without_tumor_is_an_empty_mask_only_for_a_normal_slide(tmp_path):
    geojson = _qupath_export(tmp_path / "other.geojson", [(0, 0, 64, 64)], name="Stroma")
    normal = SlideRecord(tmp_path / "s.tif", 0, "test", geojson, "s")
    mask, d = load_mask(normal, (256, 256))
    assert d == 16 and mask.shape == (16, 16) and not mask.any()
    with pytest.raises(ValueError, match=re.escape(str(geojson))):
        load_mask(SlideRecord(tmp_path / "t.tif", 1, "test", geojson, "t"), (256, 256))
