"""Cohort manifest: loading, validation messages, writing."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from monai_wsseg.datasets.manifest import (
    MANIFEST_COLUMNS,
    SlideRecord,
    load_manifest,
    write_manifest,
)

TUMOR = "TCGA-A7-A0CE-01Z-00-DX1.5B4A6F0C-96B8-4A5B-9D7B-F1F5D3C1E6A7.svs"
NORMAL = "TCGA-05-4244-11A-01-BS1.8e7d6c5b-4a39-4281-b0c1-d2e3f4a5b6c7.svs"
TUMOR_SAME_CASE = "TCGA-05-4244-01A-01-TS1.2f4a9e1c-7f3b-4c55-9a0e-1d2c3b4a5f60.svs"
CONTROL = "TCGA-05-4244-20A-01-TS1.0a1b2c3d-0000-4000-8000-000000000000.svs"


def touch(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def write_csv(root: Path, text: str, name: str = "manifest.csv") -> Path:
    path = root / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(csv: Path, exc: type[Exception] = ValueError, **kw) -> str:
    with pytest.raises(exc) as info:
        load_manifest(csv, **kw)
    assert type(info.value) is exc
    msg = str(info.value)
    assert msg.startswith(str(csv)), msg
    return msg


# ----------------------------------------------------------------------------- loading


def test_load_resolves_paths_labels_cases(tmp_path):
    touch(tmp_path, f"slides/{TUMOR}", f"slides/{NORMAL}", "other.tiff", "masks/a.png")
    outside = tmp_path.parent / f"{tmp_path.name}_outside.ndpi"
    outside.write_bytes(b"")
    csv = write_csv(
        tmp_path,
        "slide,label,split,mask,case,location\n"
        f"slides/{TUMOR},,train,masks/a.png,,breast\n"
        f"./slides/{NORMAL},,test,,,\n"
        f"other.tiff,1,val,,patient7,kidney\n"
        f"{outside},0,,,,\n",
    )
    recs = load_manifest(csv)
    assert recs == [
        SlideRecord(tmp_path / "slides" / TUMOR, 1, "train", tmp_path / "masks/a.png", "TCGA-A7-A0CE", "breast"),
        SlideRecord(tmp_path / "slides" / NORMAL, 0, "test", None, "TCGA-05-4244", None),
        SlideRecord(tmp_path / "other.tiff", 1, "val", None, "patient7", "kidney"),
        SlideRecord(outside, 0, None, None, outside.stem, None),
    ]
    assert all(r.slide.is_absolute() for r in recs)


def test_load_relative_csv_path_from_other_cwd(tmp_path, monkeypatch):
    touch(tmp_path, "data/s.svs")
    write_csv(tmp_path / "data", "slide,label\ns.svs,1\n")
    monkeypatch.chdir(tmp_path)
    (rec,) = load_manifest("data/manifest.csv")
    assert rec.slide == tmp_path / "data" / "s.svs"
    assert rec.case == "s"


def test_header_is_case_insensitive_with_bom_and_spaces(tmp_path):
    touch(tmp_path, "a.svs")
    csv = tmp_path / "m.csv"
    csv.write_bytes("\ufeff Slide , LABEL ,Split\r\n a.svs , 1.0 , TRAIN \r\n\r\n".encode())
    (rec,) = load_manifest(csv)
    assert (rec.slide, rec.label, rec.split) == (tmp_path / "a.svs", 1, "train")


def test_only_slide_column_with_tcga_names(tmp_path):
    touch(tmp_path, TUMOR, NORMAL)
    csv = write_csv(tmp_path, f"slide\n{TUMOR}\n{NORMAL}\n")
    assert [r.label for r in load_manifest(csv)] == [1, 0]


def test_mask_on_normal_slide_is_allowed(tmp_path):
    touch(tmp_path, "n.svs", "n_mask.tif")
    csv = write_csv(tmp_path, "slide,label,mask\nn.svs,0,n_mask.tif\n")
    (rec,) = load_manifest(csv)
    assert rec.label == 0 and rec.mask == tmp_path / "n_mask.tif"


def test_explicit_label_contradicting_barcode_warns_and_wins(tmp_path):
    touch(tmp_path, NORMAL)
    csv = write_csv(tmp_path, f"slide,label\n{NORMAL},1\n")
    with pytest.warns(UserWarning) as record:
        (rec,) = load_manifest(csv)
    assert rec.label == 1
    msg = str(record[0].message)
    assert msg.startswith(str(csv)) and "row 1 (line 2)" in msg and "contradict" in msg


def test_agreeing_label_does_not_warn(tmp_path):
    touch(tmp_path, NORMAL)
    csv = write_csv(tmp_path, f"slide,label\n{NORMAL},0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_manifest(csv)


def test_require_labels_false_leaves_label_none(tmp_path):
    touch(tmp_path, "a.svs", CONTROL)
    csv = write_csv(tmp_path, f"slide\na.svs\n{CONTROL}\n")
    assert [r.label for r in load_manifest(csv, require_labels=False)] == [None, None]


def test_check_files_false_skips_existence(tmp_path):
    csv = write_csv(tmp_path, "slide,label,mask\nnowhere.svs,1,nomask.png\n")
    (rec,) = load_manifest(csv, check_files=False)
    assert rec.slide == tmp_path / "nowhere.svs"


def test_allow_unknown_columns(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,label,notes\na.svs,1,anything\n")
    (rec,) = load_manifest(csv, allow_unknown_columns=True)
    assert rec.label == 1


# ----------------------------------------------------------------------------- errors


def test_missing_csv(tmp_path):
    csv = tmp_path / "nope.csv"
    msg = load_error(csv, FileNotFoundError)
    assert "manifest not found" in msg


def test_csv_is_a_folder(tmp_path):
    assert "is a folder" in load_error(tmp_path)


def test_empty_csv(tmp_path):
    csv = write_csv(tmp_path, "\n  \n")
    assert "empty manifest" in load_error(csv)


def test_header_only(tmp_path):
    csv = write_csv(tmp_path, "slide,label\n")
    assert "no slide rows, only a header" in load_error(csv)


def test_missing_slide_column(tmp_path):
    csv = write_csv(tmp_path, "path,label\na.svs,1\n")
    msg = load_error(csv)
    assert "line 1" in msg and "missing required column 'slide'" in msg
    assert "unknown column 'path'" in msg  # reported together


def test_unknown_columns_list_allowed(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,lable,notes,\na.svs,1,x,\n")
    msg = load_error(csv)
    assert "line 1" in msg and "unknown columns 'lable', 'notes', <unnamed column 4>" in msg
    assert "allowed: " + ", ".join(MANIFEST_COLUMNS) in msg


def test_duplicate_column(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,label,Label\na.svs,1,1\n")
    assert "line 1: column 'label' appears twice" in load_error(csv)


def test_empty_slide_path(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,label\na.svs,1\n ,0\n")
    assert "row 2 (line 3): empty 'slide' path" in load_error(csv)


def test_duplicate_slide_rows(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,label\na.svs,1\nsub/../a.svs,1\ngone.svs,1\ngone.svs,0\n")
    msg = load_error(csv)
    assert "row 2 (line 3): slide 'sub/../a.svs' duplicates row 1 (line 2)" in msg
    assert "row 4 (line 5): slide 'gone.svs' duplicates row 3 (line 4)" in msg  # missing or not


@pytest.mark.parametrize("bad", ["2", "yes", "0.5", "-1", "true", "01.5"])
def test_label_not_binary(tmp_path, bad):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, f"slide,label\na.svs,{bad}\n")
    msg = load_error(csv)
    assert f"row 1 (line 2): label '{bad}' is not 0 (normal) or 1 (tumor)" in msg


def test_missing_label_without_barcode(tmp_path):
    touch(tmp_path, "slide7.svs")
    csv = write_csv(tmp_path, "slide,label\nslide7.svs,\n")
    msg = load_error(csv)
    assert "row 1 (line 2): no label" in msg and "'slide7.svs' holds no TCGA barcode" in msg


def test_missing_label_with_control_barcode(tmp_path):
    touch(tmp_path, CONTROL)
    csv = write_csv(tmp_path, f"slide\n{CONTROL}\n")
    msg = load_error(csv)
    assert "row 1 (line 2): no label" in msg and "code 20" in msg and "not a usable" in msg


def test_bad_split(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,label,split\na.svs,1,training\n")
    assert "row 1 (line 2): split 'training' is not one of train, val, test" in load_error(csv)


def test_missing_slide_and_mask_files(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,label,mask\ngone.svs,1,\na.svs,1,masks/gone.png\n")
    msg = load_error(csv, FileNotFoundError)
    assert "2 problems" in msg
    assert f"row 1 (line 2): slide file not found: {tmp_path / 'gone.svs'}" in msg
    assert f"row 2 (line 3): mask file not found: {tmp_path / 'masks' / 'gone.png'}" in msg


def test_mask_with_wrong_extension(tmp_path):
    touch(tmp_path, "a.svs", "a_mask.jpg")
    csv = write_csv(tmp_path, "slide,label,mask\na.svs,1,a_mask.jpg\n")
    assert "row 1 (line 2): mask 'a_mask.jpg' is not a .png, .tif, .tiff, .geojson, .json file" in load_error(csv)


def test_paths_outside_root(tmp_path):
    root = tmp_path / "cohort"
    touch(tmp_path, "up.svs", "cohort/in.svs", "elsewhere/abs.svs", "cohort/m.png")
    absolute = tmp_path / "elsewhere" / "abs.svs"
    csv = write_csv(
        root,
        f"slide,label,mask\n../up.svs,1,\n{absolute},0,\nin.svs,1,../cohort/m.png\n",
    )
    assert len(load_manifest(csv)) == 3  # allowed by default
    msg = load_error(csv, allow_outside_root=False)
    assert "2 problems" in msg
    assert f"row 1 (line 2): slide '../up.svs' is outside the manifest's folder {root}" in msg
    assert f"row 2 (line 3): slide '{absolute}' is outside" in msg


def test_case_in_two_splits(tmp_path):
    touch(tmp_path, TUMOR_SAME_CASE, NORMAL, "x1.svs", "x2.svs")
    csv = write_csv(
        tmp_path,
        "slide,split,label,case\n"
        f"{TUMOR_SAME_CASE},train,,\n{NORMAL},test,,\n"
        "x1.svs,val,1,p9\nx2.svs,val,0,p9\n",
    )
    msg = load_error(csv)
    assert "row 2 (line 3): case 'TCGA-05-4244' is in split 'test' here but in 'train' at row 1 (line 2)" in msg
    assert "case 'p9'" not in msg
    assert "2 problems" not in msg


def test_case_in_two_splits_reported_next_to_missing_files(tmp_path):
    csv = write_csv(tmp_path, "slide,label,split,case\na.svs,1,train,p1\nb.svs,0,val,p1\n")
    msg = load_error(csv)
    assert "3 problems" in msg and "row 2 (line 3): case 'p1' is in split 'val'" in msg


def test_extra_fields_in_a_row(tmp_path):
    touch(tmp_path, "a.svs")
    csv = write_csv(tmp_path, "slide,label\na.svs,1,oops\n")
    assert "row 1 (line 2): 3 fields but the header has 2" in load_error(csv)


def test_short_rows_and_trailing_empty_fields_are_fine(tmp_path):
    touch(tmp_path, "a.svs", "b.svs")
    csv = write_csv(tmp_path, "slide,label,split\na.svs,1\nb.svs,0,,,\n")
    assert [r.label for r in load_manifest(csv)] == [1, 0]


def test_all_problems_reported_together_with_line_numbers(tmp_path):
    touch(tmp_path, "a.svs", "b.svs", "c.svs")
    csv = write_csv(
        tmp_path,
        "slide,label,split\n"
        "a.svs,yes,train\n"
        "\n"  # blank line: skipped, not a row, but lines still count
        "b.svs,1,dev\n"
        "missing.svs,1,test\n"
        '"c\n.svs",1,\n'  # a quoted field spanning two lines
        "c.svs,3,\n",
    )
    msg = load_error(csv)
    lines = msg.splitlines()
    assert lines[0] == f"{csv}: 5 problems:"
    assert "row 1 (line 2): label 'yes'" in msg
    assert "row 2 (line 4): split 'dev'" in msg
    assert "row 3 (line 5): slide file not found" in msg
    assert "row 4 (line 6): slide file not found" in msg
    assert "row 5 (line 8): label '3'" in msg


def test_problem_list_is_capped(tmp_path):
    touch(tmp_path, *(f"s{i}.svs" for i in range(25)))
    csv = write_csv(tmp_path, "slide,label\n" + "".join(f"s{i}.svs,9\n" for i in range(25)))
    msg = load_error(csv)
    assert msg.splitlines()[0] == f"{csv}: 25 problems:"
    assert len(msg.splitlines()) == 1 + 20 + 1
    assert msg.splitlines()[-1].strip() == "... and 5 more"


def test_not_utf8(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_bytes(b"slide,label\n\xff\xfe.svs,1\n")
    assert "not UTF-8" in load_error(csv)


# ----------------------------------------------------------------------------- writing


def test_write_then_load_round_trip(tmp_path):
    root = tmp_path / "cohort"
    touch(root, f"slides/{TUMOR}", "slides/b, with comma.tif", "masks/t.png")
    outside = tmp_path / "far.svs"
    outside.write_bytes(b"")
    records = [
        SlideRecord(root / "slides" / TUMOR, 1, "train", root / "masks/t.png", "TCGA-A7-A0CE", "breast"),
        SlideRecord(root / "slides/b, with comma.tif", 0, None, None, "case b", None),
        SlideRecord(outside, None, "test", None, "far", "kidney, left"),
    ]
    csv = write_manifest(records, root / "manifest.csv")
    assert csv == root / "manifest.csv"
    text = csv.read_text()
    assert text.splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    assert f"slides/{TUMOR}" in text and str(root) not in text  # relative inside the folder
    assert str(outside) in text  # absolute outside it
    assert [p.name for p in root.iterdir() if ".tmp" in p.name] == []
    assert load_manifest(csv, require_labels=False) == records


def test_write_relative_survives_moving_the_folder(tmp_path):
    touch(tmp_path, "a/s.svs")
    write_manifest([SlideRecord(tmp_path / "a" / "s.svs", 1, None, None, "s")], tmp_path / "a" / "m.csv")
    os.rename(tmp_path / "a", tmp_path / "b")
    (rec,) = load_manifest(tmp_path / "b" / "m.csv", allow_outside_root=False)
    assert rec.slide == tmp_path / "b" / "s.svs"


def test_slide_record_validates():
    with pytest.raises(ValueError, match="label 2"):
        SlideRecord(Path("/a.svs"), 2, None, None, "a")
    with pytest.raises(ValueError, match="split 'dev'"):
        SlideRecord(Path("/a.svs"), 1, "dev", None, "a")
    with pytest.raises(ValueError, match="case"):
        SlideRecord(Path("/a.svs"), 1, None, None, "")
    assert SlideRecord("/a.svs", 1, None, "/m.png", "a").mask == Path("/m.png")
