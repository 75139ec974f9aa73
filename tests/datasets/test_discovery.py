"""A dataset folder's cohort: its manifest (splits assigned by case) or the TCGA slides in it."""

from __future__ import annotations

import pytest

from monai_wsseg.datasets.discovery import find_manifest_or_slides, find_slide_files
from tests.datasets.test_manifest import CONTROL, NORMAL, TUMOR, touch, write_csv


def test_find_uses_manifest_and_assigns_splits_by_case(tmp_path):
    names = [f"p{c}_{k}.svs" for c in range(20) for k in range(2)]
    touch(tmp_path, *names)
    rows = ["p0_0.svs,1,test,p0", "p0_1.svs,0,,p0"]  # case p0 already placed: p0_1 follows it
    rows += [f"{n},{c % 2},,p{c}" for c in range(1, 20) for n in (f"p{c}_0.svs", f"p{c}_1.svs")]
    write_csv(tmp_path, "slide,label,split,case\n" + "\n".join(rows) + "\n")
    recs = find_manifest_or_slides(tmp_path, seed=0)
    assert len(recs) == 40 and all(r.split is not None for r in recs)
    split_of = {}
    for r in recs:
        assert split_of.setdefault(r.case, r.split) == r.split
    assert split_of["p0"] == "test"
    assert find_manifest_or_slides(tmp_path, seed=0) == recs
    assert [r.split for r in find_manifest_or_slides(tmp_path, assign_splits=False)][:2] == ["test", None]
    # A CSV path works as well as its folder.
    assert find_manifest_or_slides(tmp_path / "manifest.csv", seed=0) == recs


def test_find_tcga_slides_in_a_gdc_style_folder(tmp_path):
    names = [
        f"{i:04x}-uuid/TCGA-AB-{c:04d}-{code}A-01-TS1.{i:08x}-0000-4000-8000-000000000000.svs"
        for i, (c, code) in enumerate((c, code) for c in range(30) for code in ("01", "11"))
    ]
    touch(tmp_path, *names, ".hidden/TCGA-AB-9999-01A-01-TS1.x.svs", "notes.txt")
    recs = find_manifest_or_slides(tmp_path, seed=3)
    assert len(recs) == 60
    assert recs == sorted(recs, key=lambda r: r.slide)
    assert {r.label for r in recs} == {0, 1}
    by_case: dict[str, set] = {}
    for r in recs:
        assert r.label == (1 if "-01A-" in r.slide.name else 0)
        by_case.setdefault(r.case, set()).add(r.split)
    assert len(by_case) == 30 and all(len(s) == 1 for s in by_case.values())
    counts = {s: sum(1 for v in by_case.values() if v == {s}) for s in ("train", "val", "test")}
    assert counts == {"train": 20, "val": 4, "test": 6}  # 19.5 / 4.5 / 6 cases
    assert find_manifest_or_slides(tmp_path, seed=3) == recs
    assert find_manifest_or_slides(tmp_path, seed=4) != recs
    with pytest.raises(FileNotFoundError, match="no slide files"):
        find_manifest_or_slides(tmp_path, recursive=False)  # slides only in sub-folders


def test_find_slides_without_usable_labels(tmp_path):
    touch(tmp_path, TUMOR, "scan01.ndpi", CONTROL)
    with pytest.raises(ValueError) as info:
        find_manifest_or_slides(tmp_path)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path))
    assert "scan01.ndpi: the name 'scan01.ndpi' holds no TCGA barcode" in msg
    assert f"{CONTROL}: TCGA sample-type code 20" in msg
    assert "write a manifest.csv" in msg
    recs = find_manifest_or_slides(tmp_path, require_labels=False)
    assert sorted((r.slide.name, r.label) for r in recs) == sorted(
        [(TUMOR, 1), ("scan01.ndpi", None), (CONTROL, None)]
    )


def test_find_non_recursive(tmp_path):
    touch(tmp_path, TUMOR, f"sub/{NORMAL}")
    assert [r.slide.name for r in find_manifest_or_slides(tmp_path, recursive=False)] == [TUMOR]


def test_find_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        find_manifest_or_slides(tmp_path / "missing")
    touch(tmp_path, "readme.txt")
    with pytest.raises(FileNotFoundError, match=r"no manifest.csv and no slide files \(.svs"):
        find_manifest_or_slides(tmp_path)


def test_find_slide_files_skips_hidden_entries_and_other_files(tmp_path):
    touch(tmp_path, "b/s2.SVS", "a.tif", ".hidden/s3.svs", "c/.s4.ndpi", "notes.txt", "d.tif/inner.txt")
    assert find_slide_files(tmp_path) == [tmp_path / "a.tif", tmp_path / "b" / "s2.SVS"]
    assert find_slide_files(tmp_path, recursive=False) == [tmp_path / "a.tif"]
