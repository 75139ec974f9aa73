"""BCSS cutting (monai_wsseg.wsss.bcss and scripts/prepare_bcss_wsss.py): every grid position of made-up ROIs is
written with the right label or skipped for the right reason, the output reads back through the patch
datasets, and bad options are refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from monai_wsseg.wsss import bcss
from monai_wsseg.wsss.patches import PatchClassificationDataset, PatchSegmentationDataset, read_index_mask
from tests.conftest import load_script


# ------------------------------------------------------------------------------- BCSS preparation
def _make_roi(codes_layout):
    """A 500 x 400 px ROI: (H, W, 3) RGB (a different colour per code, plus an x/y gradient) and its codes."""
    codes = np.zeros((400, 500), np.uint8)
    for (x0, y0, x1, y1), code in codes_layout:
        codes[y0:y1, x0:x1] = code
    yy, xx = np.mgrid[0:400, 0:500]
    rgb = np.stack([(codes.astype(np.int64) * 11) % 256, xx % 256, yy % 256], -1).astype(np.uint8)
    return rgb, codes


# BCSS default grouping: TUM = 1, 19, 20; STR = 2; LYM = 3, 10, 11; NEC = 4; don't care = 0, 7; rest other
EXPECTED_CLASS = {1: 0, 19: 0, 20: 0, 2: 1, 3: 2, 10: 2, 11: 2, 4: 3}


def test_prepare_bcss_wsss_on_a_made_up_roi(tmp_path):
    script = load_script("prepare_bcss_wsss")  # the command line, end to end
    layouts = {
        "roiA": [((0, 0, 250, 200), 1), ((250, 0, 500, 200), 2), ((0, 200, 150, 400), 4),
                 ((150, 200, 500, 400), 9), ((60, 60, 90, 90), 19), ((460, 0, 500, 400), 0)],
        "roiB": [((0, 0, 500, 400), 2), ((100, 100, 300, 300), 3), ((320, 40, 420, 120), 10),
                 ((0, 300, 500, 400), 9)],
    }
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    rois = {}
    for name, layout in layouts.items():
        rgb, codes = rois[name] = _make_roi(layout)
        Image.fromarray(rgb).save(tmp_path / "img" / f"{name}.png")
        Image.fromarray(codes, mode="L").save(tmp_path / "lab" / f"{name}.png")
    out = tmp_path / "bcss"
    argv = ["--images", str(tmp_path / "img"), "--masks", str(tmp_path / "lab"), "--out", str(out),
            "--stride", "64", "--val-rois", "roiB", "--test-fraction", "0"]
    summary = script.main(argv)

    def expected(codes, x, y, training):
        crop = codes[y : y + 224, x : x + 224]
        cls = np.vectorize(lambda c: EXPECTED_CLASS.get(int(c), 4 if c not in (0, 7) else 5))(crop)
        labelled = (cls < 4).mean()
        keep = labelled >= 0.5 and not (training and (cls == 5).any())
        return keep, [int((cls == k).any()) for k in range(4)], np.minimum(cls, 4)

    # every grid position is either written with the right label or skipped for the right reason
    written = {}
    for split, folder in (("training", out / "training"), ("val", out / "val" / "img")):
        for p in folder.iterdir():
            m = re.fullmatch(r"(roi[AB])_(\d+)_(\d+)\[([01]{4})\]\.png", p.name)
            assert m, p.name
            written[(m[1], int(m[2]), int(m[3]))] = (split, [int(b) for b in m[4]], p)
    n_expected = 0
    for name, (rgb, codes) in rois.items():
        training = name == "roiA"
        for y in range(0, 400 - 224 + 1, 64):
            for x in range(0, 500 - 224 + 1, 64):
                keep, label, mask = expected(codes, x, y, training)
                assert ((name, x, y) in written) == keep, (name, x, y)
                if not keep:
                    continue
                n_expected += 1
                split, got, path = written[(name, x, y)]
                assert split == ("training" if training else "val")
                assert got == label, (name, x, y)
                assert np.array_equal(np.asarray(Image.open(path)), rgb[y : y + 224, x : x + 224])
                if not training:
                    mpath = out / "val" / "mask" / path.name
                    assert np.array_equal(read_index_mask(mpath), mask)
    assert n_expected == len(written) == summary["training_patches"] + summary["val_patches"]
    assert summary["training_patches"] >= 3 and summary["val_patches"] >= 3
    assert summary["skipped_unlabelled"] >= 1 and summary["skipped_dont_care"] >= 1
    assert (out / "splits.csv").read_text().split() == ["roi,split", "roiA,training", "roiB,val"]
    # the output reads back through the datasets (BCSS: no background class; other = index 4, not scored)
    assert len(PatchClassificationDataset(out, 4)) == summary["training_patches"]
    val = PatchSegmentationDataset(out, "val", 4)
    assert val.ignore_index == 4 and val[0]["mask"].shape == (224, 224)
    # a rerun keeps existing files
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    script.main(argv)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps


def test_prepare_bcss_wsss_options(tmp_path):
    assert bcss.parse_class_codes("TUM=1,19;STR=2") == {"TUM": [1, 19], "STR": [2]}
    for bad in ("TUM", "TUM=1;STR=1", "TUM=x", "TUM=1;TUM=2"):
        with pytest.raises(ValueError, match="--class-codes"):
            bcss.parse_class_codes(bad)
    with pytest.raises(ValueError, match="--ignore-codes: code 1 is also a class code"):
        bcss.code_lut({"TUM": [1]}, [0, 1])
    splits = bcss.assign_splits([f"r{i}" for i in range(10)], None, None, 0.2, 0.1, seed=0)
    assert sorted(splits.values()).count("val") == 2 and list(splits.values()).count("test") == 1
    assert splits == bcss.assign_splits([f"r{i}" for i in range(10)], None, None, 0.2, 0.1, seed=0)
    with pytest.raises(ValueError, match="unknown ROI"):
        bcss.assign_splits(["a", "b"], ["c"], None, 0, 0, 0)
    for bad in ({"patch_size": 4}, {"min_labelled": 1.5}):
        with pytest.raises(ValueError, match=r"--patch-size|--min-labelled"):
            bcss.CutSettings(**bad)
    (tmp_path / "names.txt").write_text("r1\n\n r2 \n")
    assert bcss.read_names(f"@{tmp_path / 'names.txt'}") == ["r1", "r2"] and bcss.read_names("a, b") == ["a", "b"]
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    Image.new("RGB", (300, 300)).save(tmp_path / "i" / "r.png")
    Image.new("L", (200, 300)).save(tmp_path / "m" / "r.png")
    with pytest.raises(ValueError, match=r"r\.png: label mask is 200x300 px"):
        bcss.prepare_bcss(tmp_path / "i", tmp_path / "m", tmp_path / "o", progress=False)


@pytest.mark.parametrize("args, problem", [
    (["--class-codes", "TUM=x"], "--class-codes: expected NAME=code"),
    (["--min-labelled", "2"], "--min-labelled must be in [0, 1]"),
    (["--val-rois", "nosuch"], "--val-rois: unknown ROI(s) ['nosuch']"),
    (["--masks", "NOSUCH"], "NOSUCH: --masks folder does not exist"),
])
def test_the_script_refuses_bad_input_in_one_line(tmp_path, capsys, args, problem):
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    Image.new("RGB", (300, 300)).save(tmp_path / "i" / "r.png")
    Image.new("L", (300, 300)).save(tmp_path / "m" / "r.png")
    argv = ["--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"), "--out", str(tmp_path / "o"), *args]
    with pytest.raises(SystemExit) as exc:
        load_script("prepare_bcss_wsss").main(argv)
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("refused: ") and problem in error and "\n" not in error
