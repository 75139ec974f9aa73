"""Bad manifests: every problem is named with the CSV, the row and the reason, before any slide is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_wsseg.datasets.discovery import find_manifest_or_slides
from monai_wsseg.datasets.manifest import load_manifest
from monai_wsseg.errors import SUMMARY_PREFIX, error_summary
from monai_wsseg.metrics.tumor_maps import load_mask
from tests.conftest import PROJECT_ROOT
from tests.faults.conftest import expect_clear

HEADER = "slide,label,split,mask,case\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A dataset folder with two (fake) slide files and a 64×32 mask; the manifest checks existence only."""
    (tmp_path / "a.svs").write_bytes(b"x")
    (tmp_path / "b.svs").write_bytes(b"x")
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(tmp_path / "a_mask.png")
    (tmp_path.parent / "outside.svs").write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize(
    ("case", "body", "problem"),
    [
        ("empty file", "", "empty manifest"),
        ("header only", HEADER, "no slide rows, only a header"),
        ("duplicate rows", HEADER + "a.svs,1,train,,p1\na.svs,1,train,,p1\n",
         "row 2 (line 3): slide 'a.svs' duplicates"),
        ("unknown column", "slide,label,lable\na.svs,1,0\n", "unknown column 'lable'"),
        ("label 2", HEADER + "a.svs,2,train,,p1\n", "label '2' is not 0 (normal) or 1 (tumor)"),
        ("label -1", HEADER + "a.svs,-1,train,,p1\n", "label '-1' is not 0"),
        ("label text", HEADER + "a.svs,tumor,train,,p1\n", "label 'tumor' is not 0"),
        ("same case in two splits", HEADER + "a.svs,1,train,,p1\nb.svs,0,test,,p1\n",
         "case 'p1' is in split 'test' here but in 'train'"),
        ("unknown split", HEADER + "a.svs,1,training,,p1\n", "split 'training' is not one of"),
    ],
)
def test_a_bad_manifest_is_refused_with_row_and_reason(folder, case, body, problem):
    csv = folder / "manifest.csv"
    csv.write_text(body)
    expect_clear(f"manifest: {case}", lambda: load_manifest(csv), names=str(csv), match=problem)


def test_a_path_escaping_the_dataset_folder_is_refused_when_the_config_forbids_it(folder):
    csv = folder / "manifest.csv"
    csv.write_text(HEADER + "a.svs,1,train,,p1\n../outside.svs,0,train,,p2\n")
    assert len(load_manifest(csv)) == 2  # allowed by default: cohorts often live beside their manifest
    expect_clear("manifest: path escapes via ..", lambda: load_manifest(csv, allow_outside_root=False),
                 names=str(csv), match="outside.svs")


def test_the_training_config_forbids_escaping_paths_with_one_clear_last_line(folder):
    """The bundle's ``allow_outside_root`` reaches the manifest, and the error MONAI's parser wraps in
    "Failed to evaluate" still ends the run's output as one line naming the manifest."""
    from monai.bundle import ConfigParser

    (folder / "manifest.csv").write_text(HEADER + "a.svs,1,train,,p1\n../outside.svs,0,train,,p2\n")
    parser = ConfigParser()
    parser.read_config(str(PROJECT_ROOT / "bundles" / "mil_tumor_segmentation" / "configs" / "train.json"))
    parser["dataset_dir"] = str(folder)
    parser["allow_outside_root"] = False
    try:
        parser.get_parsed_content("cohort")
    except Exception as exc:  # MONAI's wrapper, checked below
        line = error_summary(exc)
    else:
        pytest.fail("allow_outside_root=False let a path outside the dataset folder through")
    assert line is not None and line.startswith(SUMMARY_PREFIX + "ValueError: " + str(folder / "manifest.csv"))
    assert "outside.svs" in line
    expect_clear("bundle config: path escapes via ..",
                 lambda: find_manifest_or_slides(folder, allow_outside_root=False),
                 names=str(folder / "manifest.csv"), match="outside")


def test_a_mask_whose_aspect_ratio_disagrees_with_its_slide_is_named(folder):
    mask = folder / "a_mask.png"  # 64×32: fits a 2:1 slide, not a square one
    assert load_mask(mask, (1024, 512), slide_path=folder / "a.svs")[1] == 16
    expect_clear("mask aspect ratio", lambda: load_mask(mask, (1024, 1024), slide_path=folder / "a.svs"),
                 names=str(mask), match="aspect ratio differs from its slide")


@pytest.mark.parametrize(
    ("case", "text", "match"),
    [
        ("not JSON", "{not json", "not JSON"),
        ("no geometry", '{"type": "FeatureCollection", "features": [{"type": "Feature", '
         '"properties": {"classification": {"name": "Tumor"}}}]}',
         "feature 0"),
        ("outside the slide", '{"type": "Feature", "properties": {"classification": {"name": "Tumor"}}, '
         '"geometry": {"type": "Polygon", "coordinates": [[[5000, 5000], [5100, 5000], [5100, 5100]]]}}', "outside"),
        ("no tumor region", '{"type": "Feature", "properties": {"classification": {"name": "Stroma"}}, '
         '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100]]]}}', "Stroma"),
    ],
)
def test_a_bad_qupath_geojson_mask_is_named(folder, case, text, match):
    mask = folder / "a_mask.geojson"
    mask.write_text(text)
    expect_clear(f"GeoJSON mask: {case}", lambda: load_mask(mask, (1024, 512), slide_path=folder / "a.svs"),
                 names=str(mask), match=match)
