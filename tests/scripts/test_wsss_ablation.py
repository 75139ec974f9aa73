"""scripts/wsss_ablation.py (paper B's Table III): rows → runs, the command line's checks, the resume rules on
fake phases, and an end-to-end ablation of rows 1, 3, 7, 8 on a tiny patch set (1 epoch), read back on a
rerun without training, with a run broken by an override named and the exit code 1."""

from __future__ import annotations

import csv
import json
import math

import pytest

from monai_wsseg.synthetic.generator import make_patch_set
from tests.conftest import load_script

ablation = load_script("wsss_ablation")

# 1 epoch, batch 2, no worker processes: the WSSS bundle test's tiny settings.
TINY = ["--num_epochs", "1", "--batch_size", "2", "--num_workers", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")  # the runs share few cores: see tests/conftest.py


# -- rows, runs and the command line ---------------------------------------------------------------------------
def test_rows_name_the_runs_they_need():
    assert [r.number for r in ablation.ROWS] == list(range(1, 9))
    assert ablation.runs_for([1, 3, 7, 8]) == ["p1_none", "p1_pda", "p2_multi"]
    assert ablation.runs_for([4]) == ["p1_pda", "p2_b4_3"]  # phase 2 needs p1_pda's classifier and masks
    assert ablation.runs_for([2]) == ["p1_constant"]
    assert ablation.runs_for(range(1, 9)) == ["p1_none", "p1_constant", "p1_pda", "p2_b4_3", "p2_b5_2", "p2_bn7",
                                              "p2_multi"]
    assert ablation.parse_rows(" 8,1, 3 ") == [1, 3, 8]
    for bad in ("0", "9", "1,1", "a", "", "1.5"):
        with pytest.raises(ValueError):
            ablation.parse_rows(bad)


@pytest.mark.parametrize("args", [
    ["--rows", "9"],
    ["--", "--pda_mode", "none"],  # set per run by the script
    ["--", "--output_dir", "x"],
    ["--", "--num_epoch", "1"],  # a typo: no phase defines it
    ["--", "--train#nosuch#x", "1"],
])
def test_the_command_line_refuses_what_it_cannot_honour(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not list(tmp_path.glob("out/p*"))  # nothing ran


# -- resume rules, on fake phases -------------------------------------------------------------------------------
def test_resume_rules_on_fake_phases(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    miou = iter(range(1, 100))

    def fake_train(run, setup):
        calls.append(("train", run.name))
        ckpt = setup.run_dir(run.name) / "models" / ("classifier.pt" if run.phase == 1 else "model.pt")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_text(str(len(calls)))  # a new size and mtime at each training

    def fake_pseudo(run, setup):
        calls.append(("pseudo", run.name))

    def fake_evaluate(run, setup):
        calls.append(("evaluate", run.name))
        out = setup.run_dir(run.name) / "evaluation"
        out.mkdir(parents=True, exist_ok=True)
        value = next(miou) / 100
        (out / "evaluation.csv").write_text("row,iou_A,miou,fwiou,acc\n"
                                            f"cam:bn7,{value},{value},{value},{value}\n"
                                            f"segmentation,{value},{value},{value},{value}\n")

    monkeypatch.setattr(ablation, "train", fake_train)
    monkeypatch.setattr(ablation, "pseudo_masks", fake_pseudo)
    monkeypatch.setattr(ablation, "evaluate", fake_evaluate)
    setup = ablation.Setup(tmp_path, "cpu", {})
    p1, p2 = ablation.RUNS["p1_pda"], ablation.RUNS["p2_bn7"]

    first = ablation.run_one(p1, setup, with_pseudo=False, failed={})
    assert first.status == "done" and first.rows["cam:bn7"]["miou"] == 0.01
    assert set(first.seconds) == {"train", "evaluate"}
    # its evaluation exists, but phase 2 now wants the pseudo masks: only they are made
    again = ablation.run_one(p1, setup, with_pseudo=True, failed={})
    assert again.status == "done" and again.rows["cam:bn7"]["miou"] == 0.01
    assert calls == [("train", "p1_pda"), ("evaluate", "p1_pda"), ("pseudo", "p1_pda")]
    assert ablation.run_one(p1, setup, with_pseudo=True, failed={}).status == "resumed"
    assert ablation.run_one(p2, setup, with_pseudo=False, failed={}).status == "done"
    calls.clear()
    assert ablation.run_one(p2, setup, with_pseudo=False, failed={}).status == "resumed"
    assert calls == []

    # p1_pda trained again (its checkpoint changed): the phase-2 run made from the old one is redone
    fake_train(p1, setup)
    calls.clear()
    redone = ablation.run_one(p2, setup, with_pseudo=False, failed={})
    assert redone.status == "done" and calls == [("train", "p2_bn7"), ("evaluate", "p2_bn7")]
    assert redone.seconds["train"] > 0

    # a phase-2 run does not start when p1_pda failed
    calls.clear()
    blocked = ablation.run_one(ablation.RUNS["p2_multi"], setup, with_pseudo=False, failed={"p1_pda": "boom"})
    assert blocked.status == "failed" and "p1_pda" in blocked.error and calls == []


# -- end to end ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return make_patch_set(tmp_path_factory.mktemp("ablation_patches"), n_train=8, n_val=2, n_test=2, size=64,
                          seed=0)


@pytest.fixture(scope="module")
def ablated(patches, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation_out")
    args = ["--dataset_dir", str(patches), "--output_dir", str(out), "--profile", "cpu", "--rows", "1,3,7,8"]
    return out, args, ablation.main([*args, "--", *TINY])


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
    table = ablation.read_table(out / "ablation.csv")
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
    assert len([p for p in made if p.suffix == ".pt"]) == 4
    before = {r["row"]: r for r in ablation.read_table(out / "ablation.csv")}

    rows = args.index("--rows") + 1
    rerun = list(args)
    rerun[rows] = "1,3,4,7,8"
    # row 4 needs a new run, p2_b4_3, whose segmenter cannot be built: it fails, the others are read back
    code = ablation.main([*rerun, "--", *TINY, "--pretrained_path", str(out / "no_such_weights.pt")])
    assert code == 1
    assert {p: p.stat().st_mtime_ns for p in made} == made  # nothing trained, evaluated or masked again

    table = {r["row"]: r for r in ablation.read_table(out / "ablation.csv")}
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
