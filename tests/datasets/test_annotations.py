"""QuPath GeoJSON annotations read as polygons and rasterised onto a mask grid, as a PNG mask would be."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monai_wsseg.datasets.annotations import (
    AnnotationPolygon,
    annotation_mask_shape,
    load_annotation_mask,
    rasterise_annotations,
    read_annotations,
)


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[Any]]:
    """A closed GeoJSON ring of an axis-aligned rectangle, counter-clockwise in image coordinates."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def feature(geometry: dict[str, Any] | None, cls: str | None = "Tumor", **props: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"objectType": "annotation", **props}
    if cls is not None:
        properties["classification"] = {"name": cls, "color": [200, 0, 0]}
    return {"type": "Feature", "id": "5b7c1f0e-0000-4000-8000-000000000000", "geometry": geometry,
            "properties": properties}


def polygon(*rings: list[list[Any]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def write(tmp_path: Path, data: Any, name: str = "slide.geojson") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def box_mask(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """A mask built by hand: each box ``(r0, r1, c0, c1)`` set to 1."""
    out = np.zeros(shape, np.uint8)
    for r0, r1, c0, c1 in boxes:
        out[r0:r1, c0:c1] = 1
    return out


# ---------------------------------------------------------------------------------------------------------
# rasterising
# ---------------------------------------------------------------------------------------------------------
def test_square_at_d1_and_d4_equals_its_pixel_block(tmp_path):
    path = write(tmp_path, collection(feature(polygon(rect(4, 8, 12, 16)))))
    assert np.array_equal(load_annotation_mask(path, (20, 24), 1), box_mask((24, 20), (8, 16, 4, 12)))
    mask = load_annotation_mask(path, (20, 24), 4)
    assert mask.dtype == np.uint8
    assert np.array_equal(mask, box_mask((6, 5), (2, 4, 1, 3)))


def test_mask_shape_rounds_up_and_centres_beyond_the_slide_are_outside():
    # W = 10, H = 7 at d = 4: 3 x 2 pixels; column 2 covers [8, 12), its centre x = 10 is on the right edge.
    assert annotation_mask_shape((10, 7), 4) == (2, 3)
    whole = AnnotationPolygon(np.array(rect(0, 0, 10, 7), float))
    assert np.array_equal(rasterise_annotations([whole], (10, 7), 4), [[1, 1, 0], [1, 1, 0]])
    from monai_wsseg.datasets.masks import mask_downsample

    # At realistic sizes the rounded-up shape maps back to d (tiny masks fit several d).
    for slide, d in [((1001, 703), 4), ((100_003, 80_001), 16), ((46_000, 32_914), 32)]:
        rows, cols = annotation_mask_shape(slide, d)
        assert mask_downsample((cols, rows), slide, mask_path="m", slide_path="s") == d


def test_centres_on_edges_follow_the_top_left_rule():
    # x in [2, 6) at d = 4: centre 2 is on the left edge (inside), centre 6 on the right edge (outside).
    left = AnnotationPolygon(np.array(rect(2, 2, 6, 14), float))
    right = AnnotationPolygon(np.array(rect(6, 2, 10, 14), float))
    a = rasterise_annotations([left], (12, 16), 4)
    b = rasterise_annotations([right], (12, 16), 4)
    assert np.array_equal(a, box_mask((4, 3), (0, 3, 0, 1)))  # rows: centres 2, 6, 10 inside [2, 14)
    assert np.array_equal(b, box_mask((4, 3), (0, 3, 1, 2)))
    # Polygons sharing an edge share no pixel, and together they are their union.
    both = AnnotationPolygon(np.array(rect(2, 2, 10, 14), float))
    assert not (a & b).any()
    assert np.array_equal(a | b, rasterise_annotations([both], (12, 16), 4))


def test_ties_on_inner_edges_and_hole_edges():
    # An L at d = 4 with every edge through pixel centres: the upper arm's bottom edge (y = 6) and the
    # stem's right edge (x = 10) are bottom / right edges, so the centres on them are outside.
    ell = AnnotationPolygon(np.array([[2, 2], [22, 2], [22, 6], [10, 6], [10, 14], [2, 14]], float))
    expected = box_mask((4, 6), (0, 1, 0, 5), (1, 3, 0, 2))
    assert np.array_equal(rasterise_annotations([ell], (24, 16), 4), expected)
    # A hole's left / top edges belong to the hole (centres on them are outside the region), its right /
    # bottom edges to the region.
    holed = AnnotationPolygon(np.array(rect(0, 0, 24, 24), float), (np.array(rect(6, 6, 18, 18), float),))
    expected = box_mask((6, 6), (0, 6, 0, 6))
    expected[1:4, 1:4] = 0
    assert np.array_equal(rasterise_annotations([holed], (24, 24), 4), expected)


def test_clockwise_and_closed_or_open_rings_give_the_same_mask():
    ring = np.array(rect(3, 5, 17, 11), float)
    ref = rasterise_annotations([AnnotationPolygon(ring)], (20, 12), 2)
    assert ref.sum() == 7 * 3
    assert np.array_equal(rasterise_annotations([AnnotationPolygon(ring[::-1])], (20, 12), 2), ref)
    assert np.array_equal(rasterise_annotations([AnnotationPolygon(ring[:-1])], (20, 12), 2), ref)


def test_polygon_with_a_hole(tmp_path):
    path = write(tmp_path, collection(feature(polygon(rect(0, 0, 16, 16), rect(4, 4, 12, 12)))))
    expected = box_mask((16, 16), (0, 16, 0, 16))
    expected[4:12, 4:12] = 0
    assert np.array_equal(load_annotation_mask(path, (16, 16), 1), expected)
    assert np.array_equal(load_annotation_mask(path, (16, 16), 4), [[1] * 4, [1, 0, 0, 1], [1, 0, 0, 1], [1] * 4])


def test_multipolygon_and_a_region_inside_another_features_hole(tmp_path):
    multi = {"type": "MultiPolygon", "coordinates": [
        [rect(0, 0, 12, 12), rect(4, 4, 8, 8)],
        [rect(16, 0, 20, 4)],
    ]}
    inner = polygon(rect(5, 5, 7, 7))  # another feature inside the first one's hole: kept, drawn after or before
    path = write(tmp_path, collection(feature(multi), feature(inner)))
    polygons = read_annotations(path)
    assert [(p.feature, len(p.holes)) for p in polygons] == [(0, 1), (0, 0), (1, 0)]
    expected = box_mask((12, 20), (0, 12, 0, 12), (0, 4, 16, 20))
    expected[4:8, 4:8] = 0
    expected[5:7, 5:7] = 1
    assert np.array_equal(load_annotation_mask(path, (20, 12), 1), expected)
    path = write(tmp_path, collection(feature(inner), feature(multi)), "reversed.geojson")
    assert np.array_equal(load_annotation_mask(path, (20, 12), 1), expected)


def test_overlapping_features_unite_and_parts_beyond_the_slide_are_clipped(tmp_path):
    path = write(tmp_path, collection(feature(polygon(rect(-8, -8, 8, 8))), feature(polygon(rect(4, 4, 40, 12)))))
    assert np.array_equal(load_annotation_mask(path, (16, 16), 1), box_mask((16, 16), (0, 8, 0, 8), (4, 12, 4, 16)))


@pytest.mark.parametrize("seed", range(4))
def test_random_rectangles_at_multiples_of_d_give_their_pixel_blocks(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.choice([1, 2, 4, 8, 16]))
    w_cells, h_cells = 23, 17
    polygons, boxes = [], []
    for _ in range(6):
        c0, c1 = sorted(rng.choice(w_cells + 1, 2, replace=False))
        r0, r1 = sorted(rng.choice(h_cells + 1, 2, replace=False))
        polygons.append(AnnotationPolygon(np.array(rect(c0 * d, r0 * d, c1 * d, r1 * d), float)))
        boxes.append((r0, r1, c0, c1))
    slide = (w_cells * d - int(rng.integers(0, d)), h_cells * d - int(rng.integers(0, d)))  # ragged edge
    assert np.array_equal(rasterise_annotations(polygons, slide, d), box_mask((h_cells, w_cells), *boxes))


@pytest.mark.parametrize("seed", range(5))
def test_random_polygons_agree_with_skimage_on_pixel_centres(seed):
    """Off the edges the scanline fill is skimage's point-in-polygon test with centres at ``x/d - 0.5``."""
    from skimage.draw import polygon as sk_polygon

    rng = np.random.default_rng(seed)
    d, shape = 4, (30, 40)
    n = int(rng.integers(3, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(20, 70, n)
    ring = np.c_[80 + radius * np.cos(angles), 60 + radius * np.sin(angles)] + rng.uniform(-0.3, 0.3, (n, 2))
    if seed % 2:  # star-shaped ones are simple; also try a self-intersecting one (even-odd in both)
        ring = ring[rng.permutation(n)]
    ours = rasterise_annotations([AnnotationPolygon(ring)], (shape[1] * d, shape[0] * d), d)
    theirs = np.zeros(shape, np.uint8)
    rr, cc = sk_polygon(ring[:, 1] / d - 0.5, ring[:, 0] / d - 0.5, shape)
    theirs[rr, cc] = 1
    assert ours.sum() > 0
    assert np.array_equal(ours, theirs)


def exact_centre_rule(ring: np.ndarray, d: int, shape: tuple[int, int]) -> np.ndarray:
    """The reference rule in exact arithmetic: a centre is inside when an odd number of edges with
    ``y_lo <= yc < y_hi`` cross its row at ``x <= xc`` (even-odd, top-left)."""
    from fractions import Fraction

    points = [(int(x), int(y)) for x, y in ring]
    edges = list(zip(points, points[1:] + points[:1], strict=True))
    out = np.zeros(shape, np.uint8)
    for i in range(shape[0]):
        yc = Fraction(2 * i + 1, 2) * d
        xs = [x0 + (yc - y0) * Fraction(x1 - x0, y1 - y0)
              for (x0, y0), (x1, y1) in edges if min(y0, y1) <= yc < max(y0, y1)]
        for j in range(shape[1]):
            out[i, j] = sum(x <= Fraction(2 * j + 1, 2) * d for x in xs) % 2
    return out


# Slanted edges through pixel centres, where dividing before multiplying misses the tie by one ulp.
SLANTED_TIES = [(2, [[3, 11], [2, 2], [18, 24]]), (3, [[0, 7], [21, 26], [17, 6]]),
                (1, [[5, -3], [26, 16], [14, 9]]), (4, [[6, 15], [21, 24], [6, 2]])]


@pytest.mark.parametrize("d, ring", SLANTED_TIES + [(int(d), None) for d in (1, 2, 3, 4)])
def test_integer_vertices_follow_the_rule_exactly(d, ring):
    """Integer vertices, any d, self-intersections, centres exactly on slanted edges: no rounding."""
    rng = np.random.default_rng(d)
    if ring is not None:
        rings = [np.array(ring)]
    else:
        rings = [rng.integers(-3, 27, (int(rng.integers(3, 9)), 2)) for _ in range(4)]
        for random_ring in rings:
            random_ring[0] = (12, 10)  # keeps the ring on the slide
    for vertices in rings:
        if len(np.unique(vertices, axis=0)) < 3:
            continue
        ours = rasterise_annotations([AnnotationPolygon(vertices.astype(float))], (24, 20), d)
        assert np.array_equal(ours, exact_centre_rule(vertices, d, ours.shape)), (d, vertices.tolist())


def test_mask_scores_exactly_as_the_equivalent_png(tmp_path):
    from PIL import Image

    from monai_wsseg.metrics.tumor_maps import load_mask, mask_on_grid

    ring = [[10.5, 3.0], [70.25, 12.0], [60.0, 50.5], [30.0, 35.0], [5.0, 44.0], [10.5, 3.0]]
    path = write(tmp_path, collection(feature(polygon(ring, rect(20, 12, 36, 24)))))
    slide, d = (77, 53), 4
    mask = load_annotation_mask(path, slide, d)
    Image.fromarray(mask * 255).save(tmp_path / "mask.png")
    png, png_d = load_mask(tmp_path / "mask.png", slide)
    assert png_d == d and np.array_equal(png, mask)
    grid = (slide[1] // 16 + 1, slide[0] // 16 + 1)
    assert np.array_equal(mask_on_grid(mask, d, 16, grid), mask_on_grid(png, png_d, 16, grid))


# ---------------------------------------------------------------------------------------------------------
# reading QuPath exports
# ---------------------------------------------------------------------------------------------------------
QUPATH_EXPORT = """{
  "type": "FeatureCollection",
  "features": [
    {"type": "Feature", "id": "1f2e3d4c-aaaa-4bbb-8ccc-000000000001",
     "geometry": {"type": "Polygon", "coordinates": [[[8, 8], [24, 8], [24, 24], [8, 24], [8, 8]]]},
     "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]},
                    "isLocked": false}},
    {"type": "Feature", "id": "1f2e3d4c-aaaa-4bbb-8ccc-000000000002",
     "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [32, 0], [32, 4], [0, 4], [0, 0]]]},
     "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [150, 200, 150]}}},
    {"type": "Feature", "id": "1f2e3d4c-aaaa-4bbb-8ccc-000000000003",
     "geometry": {"type": "LineString", "coordinates": [[0, 30], [31, 30]]},
     "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
    {"type": "Feature", "id": "1f2e3d4c-aaaa-4bbb-8ccc-000000000004",
     "geometry": {"type": "MultiPoint", "coordinates": [[2, 2], [3, 3]]},
     "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
    {"type": "Feature", "id": "1f2e3d4c-aaaa-4bbb-8ccc-000000000005",
     "geometry": {"type": "Polygon", "coordinates": [[[0, 28], [4, 28], [4, 32], [0, 32], [0, 28]]]},
     "properties": {"objectType": "annotation"}}
  ]
}"""


def test_a_qupath_export(tmp_path, caplog):
    path = write(tmp_path, QUPATH_EXPORT)
    caplog.set_level(logging.DEBUG, logger="monai_wsseg.datasets.annotations")
    polygons = read_annotations(path)
    assert len(polygons) == 1
    p = polygons[0]
    assert (p.class_name, p.feature, p.source, p.holes) == ("Tumor", 0, str(path), ())
    assert p.exterior.shape == (4, 2) and p.exterior.dtype == np.float64
    assert "skipped 2 other-class feature(s)" in caplog.text
    assert "'LineString': 1" in caplog.text and "'MultiPoint': 1" in caplog.text
    assert np.array_equal(load_annotation_mask(path, (32, 32), 8), box_mask((4, 4), (1, 3, 1, 3)))
    stroma = load_annotation_mask(path, (32, 32), 4, classes=("stroma", "TUMOR"))
    assert np.array_equal(stroma, box_mask((8, 8), (0, 1, 0, 8), (2, 6, 2, 6)))


@pytest.mark.parametrize("classes", [("Tumor",), ("tumor",), ("TUMOR",), (" Tumor ",), ("Necrosis", "tumor")])
def test_only_requested_classes_are_kept_case_insensitively(tmp_path, classes):
    data = collection(feature(polygon(rect(0, 0, 4, 4)), "tumor"), feature(polygon(rect(4, 4, 8, 8)), "Stroma"))
    polygons = read_annotations(write(tmp_path, data), classes)
    assert [(p.class_name, p.feature) for p in polygons] == [("tumor", 0)]


def test_class_names_fall_back_to_a_string_classification_and_the_name(tmp_path):
    features = [
        {"type": "Feature", "geometry": polygon(rect(0, 0, 4, 4)), "properties": {"classification": "Tumor"}},
        {"type": "Feature", "geometry": polygon(rect(0, 0, 4, 4)), "properties": {"name": "tumor"}},
        {"type": "Feature", "geometry": polygon(rect(0, 0, 4, 4)),
         "properties": {"classification": {"names": ["Tumor", "Positive"]}}},
        {"type": "Feature", "geometry": polygon(rect(0, 0, 4, 4)), "properties": None},
    ]
    polygons = read_annotations(write(tmp_path, features), ("Tumor", "tumor: positive"))
    assert [(p.class_name, p.feature) for p in polygons] == [("Tumor", 0), ("tumor", 1), ("Tumor: Positive", 2)]


def test_a_bare_list_a_single_feature_and_a_geometry_collection(tmp_path):
    one = feature(polygon(rect(0, 0, 8, 8)))
    expected = box_mask((8, 8), (0, 4, 0, 4))
    for name, data in [("list.json", [one]), ("one.geojson", one)]:
        assert np.array_equal(load_annotation_mask(write(tmp_path, data, name), (16, 16), 2), expected)
    mixed = feature({"type": "GeometryCollection", "geometries": [
        polygon(rect(0, 0, 8, 8)), {"type": "LineString", "coordinates": [[0, 0], [9, 9]]}]})
    assert np.array_equal(load_annotation_mask(write(tmp_path, collection(mixed)), (16, 16), 2), expected)


def test_allow_empty_gives_an_empty_mask(tmp_path):
    path = write(tmp_path, collection(feature(polygon(rect(0, 0, 8, 8)), "Stroma")))
    assert read_annotations(path, allow_empty=True) == []
    mask = load_annotation_mask(path, (10, 6), 4, allow_empty=True)
    assert mask.shape == (2, 3) and not mask.any()


# ---------------------------------------------------------------------------------------------------------
# errors: one line, starting with the file and naming the problem and the feature
# ---------------------------------------------------------------------------------------------------------
def expect_error(path: Path, problem: str, **kwargs: Any) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: ") + ".*" + re.escape(problem)) as info:
        load_annotation_mask(path, kwargs.pop("slide_size", (64, 64)), kwargs.pop("downsample", 4), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, problem", [
    ('{"type": "FeatureCollection", "features": [', "not JSON (Expecting value at line 1 column 44)"),
    ("", "not JSON"),
    ('{"type": "Polygon", "coordinates": []}', "not a GeoJSON FeatureCollection, Feature or list of features "
                                              "(got an object of type 'Polygon')"),
    ("42", "not a GeoJSON FeatureCollection, Feature or list of features (got a number)"),
    ('{"type": "FeatureCollection"}', "FeatureCollection has no 'features' list (got null)"),
])
def test_file_level_errors(tmp_path, text, problem):
    expect_error(write(tmp_path, text), problem)


def test_a_file_that_is_not_utf8_text(tmp_path):
    path = tmp_path / "slide.geojson"
    path.write_bytes(b"\xff\xfe\x00garbage")
    expect_error(path, "not JSON (not UTF-8 text)")


GOOD = feature(polygon(rect(0, 0, 8, 8)))


@pytest.mark.parametrize("bad, problem", [
    ("not a feature", "feature 1 is not a JSON object (got a string)"),
    ({"type": "Polygon", "coordinates": [rect(0, 0, 4, 4)]}, "feature 1 has type 'Polygon', not 'Feature'"),
    (feature(None), "feature 1 (class 'Tumor') has no geometry"),
    ({"type": "Feature", "properties": {"classification": {"name": "Tumor"}}},
     "feature 1 (class 'Tumor') has no geometry"),
    (feature({"type": "Circle", "coordinates": [1, 2]}),
     "feature 1 (class 'Tumor'): unsupported geometry type 'Circle' (expected Polygon or MultiPolygon)"),
    (feature(polygon([[0, 0], [4, 0], [0, 0]])), "feature 1 (class 'Tumor'): Polygon ring 0 (exterior) has 2 distinct "
                                                  "point(s); a ring needs at least 3"),
    (feature(polygon([[0, 0], [4, 0], [4, 0], [0, 0], [0, 0]])), "ring 0 (exterior) has 2 distinct point(s)"),
    (feature(polygon([])), "feature 1 (class 'Tumor'): Polygon ring 0 (exterior) has 0 distinct point(s)"),
    (feature(polygon(rect(0, 0, 8, 8), [[1, 1], [2, 2], [1, 1]])), "feature 1 (class 'Tumor'): Polygon ring 1 (hole) "
                                                                   "has 2 distinct point(s)"),
    (feature({"type": "MultiPolygon", "coordinates": [[rect(0, 0, 4, 4)], [[[0, 0]]]]}),
     "feature 1 (class 'Tumor'): MultiPolygon part 1 ring 0 (exterior) has 1 distinct point(s)"),
    (feature(polygon([[0, 0], [4, "0"], [4, 4]])), "feature 1 (class 'Tumor'): Polygon ring 0 (exterior): position 1 "
                                                    "has a non-numeric coordinate '0'"),
    (feature(polygon([[0, 0], [4, True], [4, 4]])), "position 1 has a non-numeric coordinate True"),
    (feature(polygon([[0, 0], [4], [4, 4]])), "position 1 is not an [x, y] list (got [4])"),
    (feature({"type": "Polygon", "coordinates": []}),
     "feature 1 (class 'Tumor'): Polygon coordinates are not a non-empty list of rings"),
    (feature(polygon([[0, 0], [4, 0], [4, float("nan")]])), "feature 1 (class 'Tumor'): Polygon ring 0 (exterior): "
                                                            "position 2 has a non-finite coordinate [4.0, nan]"),
    (feature(polygon([[0, 0], [float("inf"), 0], [4, 4]])), "position 1 has a non-finite coordinate [inf, 0.0]"),
    (feature(polygon(rect(100, 0, 120, 8))), "feature 1 (class 'Tumor') lies entirely outside the slide [0, 64) x "
                                             "[0, 64) (x 100 to 120, y 0 to 8)"),
    (feature(polygon(rect(-20, 10, 0, 20))), "feature 1 (class 'Tumor') lies entirely outside the slide"),
])
def test_feature_level_errors_name_the_feature(tmp_path, bad, problem):
    # json.dumps writes NaN / Infinity, which QuPath-side tools may emit too, and json.loads reads back.
    expect_error(write(tmp_path, collection(GOOD, bad)), problem)


def test_a_multipolygon_partly_on_the_slide_is_not_outside(tmp_path):
    multi = {"type": "MultiPolygon", "coordinates": [[rect(100, 0, 120, 8)], [rect(0, 0, 8, 8)]]}
    mask = load_annotation_mask(write(tmp_path, collection(feature(multi))), (64, 64), 8)
    assert np.array_equal(mask, box_mask((8, 8), (0, 1, 0, 1)))


def test_no_feature_of_the_requested_classes_lists_the_classes_found(tmp_path):
    data = collection(
        feature(polygon(rect(0, 0, 8, 8)), "Stroma"),
        feature(polygon(rect(0, 0, 8, 8)), "Stroma"),
        feature(polygon(rect(0, 0, 8, 8)), None),
        feature({"type": "Point", "coordinates": [3, 3]}, "Tumor"),
    )
    expect_error(write(tmp_path, data), "no Polygon/MultiPolygon feature of class 'Tumor' (classes found: "
                                        "'Stroma' (2), 'Tumor' (1), unclassified (1); 1 feature(s) of those classes "
                                        "are points or lines)")
    expect_error(write(tmp_path, collection(), "empty.geojson"), "(classes found: none, the file has no features)")


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nope.geojson'}: annotation file not found")):
        read_annotations(tmp_path / "nope.geojson")
    path = write(tmp_path, collection(GOOD))
    expect_error(path, "slide size (64, 0) is not two positive integers (width, height)", slide_size=(64, 0))
    expect_error(path, "downsample 2.0 is not a positive integer", downsample=2.0)
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: classes must be a non-empty sequence")):
        read_annotations(path, "Tumor")
    with pytest.raises(ValueError, match=re.escape("<annotations>: feature 0: exterior ring has 2 distinct point(s)")):
        AnnotationPolygon(np.array([[0, 0], [1, 1], [0, 0], [1, 1]], float))
