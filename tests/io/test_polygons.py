"""Polygon tracing: exact cell-edge outlines, valid shapes at pinches, small regions and holes."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy import ndimage

from monai_wsseg.inference.engine import SlideMap
from monai_wsseg.io import map_polygons
from tests.io.maps import rasterise


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
