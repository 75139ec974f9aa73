"""GeoJSON for QuPath: valid polygons in level-0 pixels that rasterise back to the map; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from monai_wsseg.inference.engine import SlideMap
from monai_wsseg.io import map_polygons, write_geojson
from tests.io.maps import (
    MAP_H,
    MAP_W,
    SLIDE_H,
    SLIDE_W,
    D,
    disc,
    iou,
    leftovers,
    one_class_map,
    rasterise,
    three_class_map,
)


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
