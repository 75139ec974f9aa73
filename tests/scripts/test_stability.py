"""``scripts/stability.py`` end to end: two seeds of 2 epochs on a tiny synthetic cohort (and a second
lab), read back without training on a rerun, judged again with an impossible floor; and its bad-input errors."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from monai_wsseg.bundle import stability as stab
from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import PROJECT_ROOT, load_script

script = load_script("stability")

# The bundle tests' tiny settings: 4 patches of 32 px per bag, small inference tiles, no worker processes.
TINY = ["--backbone", "resnet18", "--bag_size", "4", "--patch_size", "32", "--mpp", "2.0", "--num_workers", "0",
        "--infer_tile", "256", "--infer_halo", "32", "--infer_batch_size", "2", "--tissue_mpp", "16.0",
        "--num_epochs", "2"]
LENIENT = {"min_test_auc": 0.0, "warmup": 1, "min_val_after_warmup": 0.0, "max_selection_gap": 1.0,
           "min_second_lab_auc": 0.0}


def write_protocol(path, home, lab2, floors) -> str:
    path.write_text(json.dumps({"bundle": str(PROJECT_ROOT / "bundles" / "mil_tumor_segmentation"),
                                "configs": ["train.json", "cpu.json"], "seeds": [0, 1], "dataset_dir": str(home),
                                "second_lab_dir": str(lab2), "floors": floors}))
    return str(path)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("stability_cohorts")
    make_cohort(root / "home", n_tumor=4, n_normal=4, size=(512, 512), seed=3,
                splits=["train", "train", "val", "test"] * 2)  # tumor slides first
    make_cohort(root / "lab2", n_tumor=1, n_normal=1, size=(512, 512), seed=9, splits=["test", "test"],
                location="lab2")
    return root / "home", root / "lab2"


@pytest.fixture(scope="module")
def study(cohorts, tmp_path_factory, one_thread):
    home, lab2 = cohorts
    out = tmp_path_factory.mktemp("stability_out")
    protocol = write_protocol(out.parent / f"{out.name}_protocol.json", home, lab2, LENIENT)
    args = ["--protocol", protocol, "--output_dir", str(out), "--", *TINY]
    return out, args, script.main(args)


def test_two_seeds_are_trained_evaluated_and_tabulated(study):
    out, _, code = study
    assert code == 0
    rows = list(csv.DictReader(open(out / "stability.csv", newline="")))
    assert [r["seed"] for r in rows] == ["0", "1", "median", "min", "max"]
    for r in rows[:2]:
        assert r["status"] == "done" and r["verdict"] == "pass"
        for key in ("kept_test_auc", "last_test_auc", "lab2_auc"):
            assert 0 <= float(r[key]) <= 1, key
    assert float(rows[3]["kept_test_auc"]) <= float(rows[2]["kept_test_auc"]) <= float(rows[4]["kept_test_auc"])
    for s in (0, 1):
        seed_dir = out / f"seed_{s}"
        assert (seed_dir / "result.json").is_file() and (seed_dir / "eval_kept" / "evaluation.csv").is_file()
        assert (seed_dir / "lab2_kept" / "evaluation.csv").is_file()
        settings = json.loads((seed_dir / "train" / "run.json").read_text())["settings"]
        assert (settings["seed"], settings["bag_size"]) == (s, 4)  # the seed and the overrides reached training
    md = (out / "stability.md").read_text()
    assert "| 0 |" in md and "| 1 |" in md and "| **median** |" in md and "| **max** |" in md
    with Image.open(out / "stability.png") as im:
        assert im.format == "PNG"
    assert "[2/2] seed 1: done" in (out / "stability.log").read_text()


def test_a_rerun_reads_seeds_back_and_an_impossible_floor_fails_them(study, cohorts, monkeypatch):
    out, _, _ = study
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("seed_*/result.json")}
    assert len(stamps) == 2

    def broken(protocol, seed, *_):
        if seed != 7:
            raise AssertionError(f"seed {seed} was trained again")
        raise RuntimeError("a broken seed")

    monkeypatch.setattr(stab, "_train", broken)
    monkeypatch.setattr(stab, "_evaluate", lambda *a, **k: pytest.fail("evaluated again"))
    harsh = write_protocol(out.parent / f"{out.name}_harsh.json", *cohorts, {**LENIENT, "min_test_auc": 2.0})
    rerun = ["--protocol", harsh, "--output_dir", str(out), "--seeds", "0,1,7", "--", *TINY]
    assert script.main(rerun) == 1
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rows = {r["seed"]: r for r in csv.DictReader(open(out / "stability.csv", newline=""))}
    assert rows["0"]["status"] == rows["1"]["status"] == "resumed"
    assert rows["0"]["verdict"].startswith("below floor: kept_test_auc") and "< 2" in rows["0"]["verdict"]
    assert rows["7"]["status"] == "failed" and "a broken seed" in rows["7"]["error"]
    log = (out / "stability.log").read_text()
    assert "seed 0 below a floor" in log and "seed 1 below a floor" in log and "seed 7 failed" in log
    assert "seed 0: finished before" in log


@pytest.mark.parametrize("case", ["no_seeds", "no_dataset", "no_protocol", "bad_json", "owned_override", "one_label"])
def test_bad_input_is_one_line_and_exit_2(case, cohorts, tmp_path, capsys):
    home, lab2 = cohorts
    protocol = write_protocol(tmp_path / "p.json", home, lab2, LENIENT)
    args = ["--protocol", protocol, "--output_dir", str(tmp_path / "out")]
    expected = {"no_seeds": "seed list is empty", "no_dataset": "nosuch", "no_protocol": "missing.json",
                "bad_json": "p.json: not valid JSON", "owned_override": "['seed']",
                "one_label": "split 'train': 2 slide(s) but none normal (label 0)"}[case]
    if case == "no_seeds":
        args += ["--seeds", ""]
    elif case == "no_dataset":
        args += ["--dataset_dir", str(tmp_path / "nosuch")]
    elif case == "no_protocol":
        args[1] = str(tmp_path / "missing.json")
    elif case == "bad_json":
        (tmp_path / "p.json").write_text("{\"seeds\": [0,")
    elif case == "one_label":
        make_cohort(tmp_path / "tumor_only", n_tumor=2, n_normal=1, size=(256, 256), seed=1,
                    splits=["train", "train", "val"])
        args += ["--dataset_dir", str(tmp_path / "tumor_only")]
        capsys.readouterr()  # the generator's progress bar
    else:
        args += ["--", "--seed", "3"]
    assert script.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists()
