"""Regions of interest (manifest ``roi``): rasterised on the tissue grid; inference and evaluation keep to them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monai_wsseg.datasets.manifest import SlideRecord, load_manifest, write_manifest
from monai_wsseg.datasets.roi import restrict_to_roi, roi_mask
from monai_wsseg.inference.cohort import run_cohort
from monai_wsseg.inference.report import read_slide_report
from monai_wsseg.mil.evaluation import TumorMapEvaluation
from monai_wsseg.wsi.tissue import TissueMask
from tests.inference.test_cohort import TinyFCN, inferer, make_slides


def write_regions(path: Path, boxes: list[tuple[float, float, float, float]], names: list[str | None]) -> Path:
    """A QuPath-style FeatureCollection of rectangles ``(x0, y0, x1, y1)`` in level-0 px, one class each."""
    features = []
    for (x0, y0, x1, y1), name in zip(boxes, names, strict=True):
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        props = {"objectType": "annotation"} | ({"classification": {"name": name}} if name else {})
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": props})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_regions_of_any_class_fill_the_grid_pixels_whose_centres_they_hold(tmp_path):
    like = TissueMask(np.ones((6, 10), bool), 8.0, (16.0, 16.0))
    path = write_regions(tmp_path / "roi.geojson", [(0, 0, 64, 96), (128, 32, 160, 64)], [None, "Region*"])
    roi = roi_mask(path, (160, 96), like)
    expected = np.zeros((6, 10), bool)
    expected[:, :4] = True  # x < 64: columns 0..3 (centres 8..56)
    expected[2:4, 8:10] = True  # 128 ≤ x < 160, 32 ≤ y < 64
    assert np.array_equal(roi.mask, expected) and roi.scale == like.scale and roi.mpp == like.mpp
    tissue = TissueMask(np.eye(6, 10, dtype=bool), 8.0, (16.0, 16.0))
    kept = restrict_to_roi(tissue, path, (160, 96))
    assert np.array_equal(kept.mask, tissue.mask & expected)
    assert restrict_to_roi(tissue, None, (160, 96)) is tissue


def test_a_non_integer_grid_scale_is_sampled_at_pixel_centres(tmp_path):
    like = TissueMask(np.ones((4, 4), bool), 7.5, (15.0, 15.0))
    path = write_regions(tmp_path / "roi.geojson", [(0, 0, 31, 60)], ["Tumor"])
    assert np.array_equal(roi_mask(path, (60, 60), like).mask[0], [True, True, False, False])


def test_the_manifest_reads_writes_and_checks_the_roi_column(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    write_regions(tmp_path / "a.geojson", [(0, 0, 10, 10)], [None])
    (tmp_path / "manifest.csv").write_text("slide,label,roi\na.tif,1,a.geojson\n")
    [record] = load_manifest(tmp_path / "manifest.csv")
    assert record.roi == tmp_path / "a.geojson"
    again = load_manifest(write_manifest([record], tmp_path / "copy.csv"))
    assert again == [record]
    (tmp_path / "bad.csv").write_text("slide,label,roi\na.tif,1,a.png\na.tif,1,gone.geojson\n")
    with pytest.raises(ValueError, match=r"(?s)roi 'a.png' is not a .geojson, .json file.*roi file not found"):
        load_manifest(tmp_path / "bad.csv")


@pytest.fixture(scope="module")
def slide_with_roi(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("roi")
    [slide] = make_slides(root, 1)  # 1024 x 768, glass at x < 400
    return slide, write_regions(root / "roi.geojson", [(400, 0, 704, 768)], ["Region"])


def test_inference_keeps_to_the_tissue_inside_the_regions(slide_with_roi, tmp_path):
    slide, roi = slide_with_roi
    whole = run_cohort(inferer(TinyFCN()), [slide], tmp_path / "whole")
    part = run_cohort(inferer(TinyFCN()), [SlideRecord(slide, None, None, None, "c", roi=roi)], tmp_path / "part")
    assert whole.done and part.done
    a, b = read_slide_report(tmp_path / "whole" / "slide0.json"), read_slide_report(tmp_path / "part" / "slide0.json")
    assert b["nodata_cells"] > a["nodata_cells"]
    import tifffile

    full, kept = tifffile.imread(tmp_path / "whole" / "slide0.tif"), tifffile.imread(tmp_path / "part" / "slide0.tif")
    d = a["downsample"]
    assert (full[:, 800 // d :] > 0).any() and not (kept[:, 800 // d :] > 0).any()  # right of the region: not run
    assert np.array_equal(kept[:, 450 // d : 650 // d], full[:, 450 // d : 650 // d])


def test_evaluation_counts_only_the_cells_inside_the_regions(slide_with_roi, tmp_path):
    slide, roi = slide_with_roi
    ev = TumorMapEvaluation(inferer(TinyFCN()), [], tmp_path, progress=False)
    whole, _ = ev.evaluate_slide(SlideRecord(slide, 0, "test", None, "c"))
    part, _ = ev.evaluate_slide(SlideRecord(slide, 0, "test", None, "c", roi=roi))
    (all_whole, tissue_whole), (all_part, tissue_part) = ((a.all.neg.sum(), a.tissue.neg.sum()) for a in (whole, part))
    region_cells = (304 // 16 + 1) * (768 // 16)  # map cells of 16 level-0 px (stride 16 at the slide's mpp)
    assert 0 < tissue_part < tissue_whole and tissue_part <= all_part <= region_cells < all_whole
