"""scripts/wsss_ablation.py (paper B's Table III), the command-line face of monai_wsseg.wsss.ablation: the
command line's checks, and an end-to-end ablation of rows 1, 3, 7, 8 on a tiny patch set (1 epoch), read back
on a rerun without training, with a run broken by an override named and the exit code 1. The definition, the
resume rules and the tables are tested in tests/wsss/test_ablation.py."""

from __future__ import annotations

import csv
import json
import math

import pytest

from monai_wsseg.synthetic.generator import make_patch_set
from monai_wsseg.wsss.ablation_tables import read_table
from tests.conftest import load_script

script = load_script("wsss_ablation")

# 1 epoch, batch 2, no worker processes: the WSSS bundle test's tiny settings.
TINY = ["--num_epochs", "1", "--batch_size", "2", "--num_workers", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")  # the runs share few cores: see tests/conftest.py


# -- the command line -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, problem", [
    (["--rows", "9"], "--rows: '9' is not a row of the table"),
    (["--", "--pda_mode", "none"], "set by the script per run"),  # set per run by the script
    (["--", "--output_dir", "x"], "set by the script per run"),
    (["--", "--num_epoch", "1"], "['num_epoch']: no phase's config defines them"),  # a typo: no phase defines it
    (["--", "--train#nosuch#x", "1"], "no phase's config defines them"),
    (["--definition", "no_such.json"], "no_such.json: ablation definition file not found"),
])
def test_the_command_line_refuses_what_it_cannot_honour(tmp_path, args, problem, capsys):
    with pytest.raises(SystemExit) as exc:
        script.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("wsss_ablation.py: error: ") and problem in error
    assert not list(tmp_path.glob("out/p*"))  # nothing ran


# -- end to end ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return make_patch_set(tmp_path_factory.mktemp("ablation_patches"), n_train=8, n_val=2, n_test=2, size=64,
                          seed=0)


@pytest.fixture(scope="module")
def ablated(patches, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation_out")
    args = ["--dataset_dir", str(patches), "--output_dir", str(out), "--profile", "cpu", "--rows", "1,3,7,8"]
    return out, args, script.main([*args, "--", *TINY])


def evaluation_rows(path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {r["row"]: r for r in csv.DictReader(f)}


def same(table_value: float, csv_value: str) -> bool:
    expected = float(csv_value)
    return math.isnan(table_value) if math.isnan(expected) else table_value == pytest.approx(expected)


def test_an_ablation_tabulates_the_rows_from_its_runs_evaluations(ablated):
    out, _, code = ablated
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["p1_none", "p1_pda", "p2_multi"]
    table = read_table(out / "ablation.csv")
    assert [r["row"] for r in table] == [1, 3, 7, 8]
    assert [(r["run"], r["source_row"]) for r in table] == [
        ("p1_none", "cam:bn7"), ("p1_pda", "cam:bn7"), ("p2_multi", "segmentation"), ("p2_multi", "segmentation+gate")]
    classes = [c[4:] for c in table[0] if c.startswith("iou_")]
    assert classes == ["TE", "NEC", "LYM", "TAS"]  # the class names of the evaluation CSVs
    for r in table:
        assert r["status"] == "done" and r["run_seconds"] > 0
        source = evaluation_rows(out / r["run"] / "evaluation" / "evaluation.csv")[r["source_row"]]
        for key in [f"iou_{c}" for c in classes] + ["fwiou", "miou", "acc"]:
            assert same(r[key], source[key]), (r["row"], key)
        assert 0 <= r["miou"] <= 1 and 0 < r["acc"] <= 1
    assert (table[0]["pda"], table[1]["pda"], table[2]["pseudo_supervision"]) == ("none", "pda", "multi")
    assert [r["class_gate"] for r in table] == [0, 0, 0, 1]

    # each run got its own settings: the phase-1 mode, and phase 2 trained on p1_pda's three layers
    assert json.loads((out / "p1_none" / "run.json").read_text())["settings"]["pda_mode"] == "none"
    assert json.loads((out / "p2_multi" / "run.json").read_text())["settings"]["layer_weights"] == [0.2, 0.2, 0.6]
    assert not (out / "p2_multi" / "pseudo").exists() and (out / "p1_pda" / "pseudo" / "bn7").is_dir()

    md = (out / "ablation.md").read_text(encoding="utf-8")
    assert "| (1) | Phase 1 | - | - | - |" in md and "| (8) | Phase 2 | ✓ | Multi-Layer | ✓ |" in md
    assert "- p1_pda: " in md and "pseudo " in md  # per-run wall time in the notes
    log = (out / "ablation.log").read_text(encoding="utf-8")
    assert "train_loss" in log and "val_miou" in log  # the bundles' own loggers reach the log
    assert "[3/3] p2_multi: done" in log


def test_a_rerun_does_not_train_again_and_a_failing_run_is_named(ablated):
    out, args, _ = ablated
    made = {p: p.stat().st_mtime_ns for pattern in ("*/models/*.pt", "*/evaluation/evaluation.csv", "*/pseudo/*/*.png")
            for p in out.glob(pattern)}
    # two classifiers; p2_multi's segmenter: its best epoch (model.pt) and its last (model_last.pt)
    # (the per-epoch *_checkpoint_epoch=N.pt that resuming reads are not models)
    assert len([p for p in made if p.suffix == ".pt" and "checkpoint" not in p.name]) == 4
    before = {r["row"]: r for r in read_table(out / "ablation.csv")}

    rows = args.index("--rows") + 1
    rerun = list(args)
    rerun[rows] = "1,3,4,7,8"
    # row 4 needs a new run, p2_b4_3, whose segmenter cannot be built: it fails, the others are read back
    code = script.main([*rerun, "--", *TINY, "--pretrained_path", str(out / "no_such_weights.pt")])
    assert code == 1
    assert {p: p.stat().st_mtime_ns for p in made} == made  # nothing trained, evaluated or masked again

    table = {r["row"]: r for r in read_table(out / "ablation.csv")}
    assert list(table) == [1, 3, 4, 7, 8]
    for n in (1, 3, 7, 8):
        assert table[n]["status"] == "resumed" and table[n]["miou"] == pytest.approx(before[n]["miou"])
        assert table[n]["run_seconds"] == pytest.approx(before[n]["run_seconds"])
    failed = table[4]
    assert failed["status"] == "failed" and failed["run"] == "p2_b4_3" and math.isnan(failed["miou"])
    assert "FileNotFoundError" in failed["error"] and "no_such_weights.pt" in failed["error"]
    # the single-layer run was set up with its one layer before it failed
    assert json.loads((out / "p2_b4_3" / "run.json").read_text())["settings"]["layer_weights"] == [1.0]
    assert "Failed: p2_b4_3 (FileNotFoundError" in (out / "ablation.md").read_text(encoding="utf-8")
    assert "failed: p2_b4_3 (FileNotFoundError" in (out / "ablation.log").read_text(encoding="utf-8")
