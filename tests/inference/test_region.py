"""Region inference equals the same cells of a whole-slide run, and its polygons tile the whole map's."""

from __future__ import annotations

import numpy as np
import pytest

from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.inference.region import infer_region
from monai_wsseg.wsi.slide import open_slide
from tests.inference.test_engine import HALO, STRIDE, KnownFCN, full_mask


def inferer(overlap: float) -> WSIInferer:
    return WSIInferer(KnownFCN(), mpp=0.5, stride=STRIDE, tile=128, halo=HALO, overlap=overlap, num_classes=2,
                      activation="softmax", num_workers=0, progress=False)


@pytest.fixture(scope="module", params=[0.0, 0.5], ids=["overlap0", "overlap0.5"])
def whole(request, slide_path):
    """(overlap, whole-slide map) computed once per overlap."""
    slide = open_slide(slide_path)
    return request.param, inferer(request.param)(slide, tissue=full_mask(slide))


@pytest.mark.parametrize("box", [(301, 77, 250, 333), (5, 600, 40, 40), (900, 650, 400, 400)])
def test_region_cells_equal_the_whole_slide_map(slide_path, whole, box):
    overlap, smap = whole
    slide = open_slide(slide_path)
    region = infer_region(inferer(overlap), slide, box, tissue=full_mask(slide))
    d = smap.downsample
    x0, y0 = region.origin
    h, w = region.probabilities.shape[1:]
    assert x0 <= box[0] < x0 + d and y0 <= box[1] < y0 + d
    expected = smap.probabilities[:, y0 // d : y0 // d + h, x0 // d : x0 // d + w]
    assert expected.shape == region.probabilities.shape
    np.testing.assert_allclose(region.probabilities, expected, atol=1e-6)


def test_region_polygons_tile_the_whole_map_polygons(slide_path, whole):
    pytest.importorskip("shapely")
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    from monai_wsseg.io import map_polygons

    slide = open_slide(slide_path)
    tissue = full_mask(slide)
    names = ["a", "b"]
    overlap, smap = whole
    polys = map_polygons(smap, class_names=names, min_area_cells=1)
    pieces = []
    for box in [(0, 0, 480, 700), (480, 0, 520, 300), (480, 300, 520, 400)]:  # cell-aligned (d = 8)
        pieces += infer_region(inferer(overlap), slide, box, tissue=tissue).polygons(names)
    for name in names:
        ref = unary_union([Polygon(p.rings[0], p.rings[1:]) for p in polys if p.class_name == name])
        got = unary_union([Polygon(p.rings[0], p.rings[1:]) for p in pieces if p.class_name == name])
        assert ref.area > 0 and ref.symmetric_difference(got).area == pytest.approx(0, abs=1e-6)


def test_region_outside_the_slide_is_refused(slide_path):
    with pytest.raises(ValueError, match="outside the slide"):
        infer_region(inferer(0.0), slide_path, (2000, 0, 100, 100))


def test_polygons_without_holes_cover_the_same_cells():
    pytest.importorskip("shapely")
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    from monai_wsseg.inference.region import RegionMap

    mask = np.zeros((12, 14), dtype=np.float32)
    mask[1:11, 1:13] = 1
    mask[3:5, 3:6] = 0  # a hole
    mask[6:9, 7:11] = 0  # a hole holding an island, with a second hole touching its corner
    mask[7, 8] = 1
    mask[2, 10] = 0
    probs = np.stack([mask, 1 - mask])
    region = RegionMap("s.tif", probs, downsample=4, mpp=2.0, origin=(40, 80), slide_dimensions=(1000, 1000))
    for name in ("a", "b"):
        with_holes = [p for p in region.polygons(["a", "b"]) if p.class_name == name]
        plain = [p for p in region.polygons(["a", "b"], holes=False) if p.class_name == name]
        assert any(len(p.rings) > 1 for p in with_holes) or name == "b"
        assert all(len(p.rings) == 1 for p in plain)
        ref = unary_union([Polygon(p.rings[0], p.rings[1:]) for p in with_holes])
        got = unary_union([Polygon(p.rings[0]) for p in plain])
        assert ref.area == got.area == 16 * float((mask == (name == "a")).sum())
        assert ref.symmetric_difference(got).area == 0
    with pytest.raises(ValueError, match="min_area_cells=1"):
        region.polygons(["a", "b"], holes=False, min_area_cells=4)
