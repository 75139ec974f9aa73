"""The stability protocol without training: protocol files, validation curves, floors, tables and figure
on fabricated results, and one seed's flow on fabricated training outputs (bundle runs replaced)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from PIL import Image

from monai_wsseg.bundle import stability as stab
from monai_wsseg.bundle.stability import (
    Floors,
    SeedResult,
    StabilityProtocol,
    check_floors,
    curve_figures,
    load_protocol,
    markdown_table,
    parse_seeds,
    plot_curves,
    read_validation_curve,
    summarize,
    write_tables,
)
from monai_wsseg.bundle.stability_results import _nan_figures
from tests.conftest import PROJECT_ROOT

BUNDLE = PROJECT_ROOT / "bundles" / "mil_tumor_segmentation"
FLOORS = Floors(min_test_auc=0.9, warmup=2, min_val_after_warmup=0.8, max_selection_gap=0.01,
                min_second_lab_auc=0.85)


# -- the protocol file --------------------------------------------------------------------------------------
def test_the_shipped_cpu_protocol():
    p = load_protocol(PROJECT_ROOT / "configs" / "stability" / "mil_cpu.json")
    assert p.bundle == BUNDLE and p.configs == ("train.json", "cpu.json") and p.seeds == (0, 1, 2, 3, 4)
    assert p.dataset_dir == PROJECT_ROOT / "demo" / "hard" / "home"
    assert p.second_lab_dir == PROJECT_ROOT / "demo" / "hard" / "lab2"
    assert p.floors == Floors(min_test_auc=0.95, warmup=5, min_val_after_warmup=0.85, max_selection_gap=0.01,
                              min_second_lab_auc=0.95)
    assert [f.name for f in p.eval_files()] == ["inference.json", "cpu.json", "evaluate.json"]
    assert all(f.is_file() for f in p.train_files() + p.eval_files())


def test_relative_paths_are_relative_to_root(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    f = tmp_path / "a" / "b" / "p.json"
    f.write_text(json.dumps({"root": "..", "bundle": "bun", "dataset_dir": "data", "seeds": [3]}))
    p = load_protocol(f)
    assert (p.bundle, p.dataset_dir, p.second_lab_dir) == (tmp_path / "a" / "bun", tmp_path / "a" / "data", None)
    with pytest.raises(FileNotFoundError, match="bundle folder not found"):
        p.check()


@pytest.mark.parametrize("data, message", [
    ({"bundle": "b", "dataset_dir": "d"}, "missing key"),
    ({"bundle": "b", "dataset_dir": "d", "seeds": []}, "seed list is empty"),
    ({"bundle": "b", "dataset_dir": "d", "seeds": [1, 1]}, "more than once"),
    ({"bundle": "b", "dataset_dir": "d", "seeds": [0], "seed": 1}, "unknown key"),
    ({"bundle": "b", "dataset_dir": "d", "seeds": [0], "floors": {"min_auc": 1}}, "floors: unknown key"),
    ({"bundle": "b", "dataset_dir": "d", "seeds": [0], "floors": {"warmup": -1}}, "warmup"),
    ({"bundle": "b", "dataset_dir": "d", "seeds": [0], "floors": {"min_test_auc": "high"}}, "finite number"),
    ({"bundle": "b", "dataset_dir": "d", "seeds": [0], "configs": "train.json"}, "list of config"),
    ([1, 2], "JSON object"),
])
def test_a_bad_protocol_is_one_line_naming_the_file(tmp_path, data, message):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        load_protocol(f)
    assert str(info.value).startswith(str(f)) and "\n" not in str(info.value)


def test_seeds_option():
    assert parse_seeds("0, 1,4") == (0, 1, 4)
    for bad in ("", " , ", "0,x"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


# -- curves and floors ---------------------------------------------------------------------------------------
def test_validation_curve_and_its_figures(tmp_path):
    f = tmp_path / "validation.csv"
    f.write_text("epoch,val_auc,val_label_score\n1,0.5,0.2\n2,0.9,0.4\n3,0.7,0.5\n3,0.8,0.6\n4,0.9,\n5,nan,0.1\n")
    curve = read_validation_curve(f)
    assert curve["epoch"] == [1, 2, 3, 4, 5] and curve["val_auc"][2] == 0.8  # a repeated epoch keeps its last row
    assert math.isnan(curve["val_label_score"][3])
    figures = curve_figures(curve, warmup=2)
    assert figures["best_epoch"] == 2  # the first of the tied best: the saver keeps it
    assert figures["min_val_after_warmup"] == 0.8  # epochs 3-5, the undefined one left out
    assert math.isnan(figures["final_val"])
    assert all(math.isnan(v) for v in curve_figures({}, 2).values())
    assert math.isnan(curve_figures(curve, warmup=5)["min_val_after_warmup"])


def fake(seed: int, kept: float, status: str = "done", **more: float) -> SeedResult:
    figures = {"kept_test_auc": kept, "last_test_auc": kept - 0.01, "label_test_auc": kept - 0.005,
               "selection_gap": 0.005, "lab2_auc": kept - 0.02, "best_epoch": 3.0,
               "min_val_after_warmup": 0.85, "final_val": 0.9, **more}
    r = SeedResult(seed, status=status, figures=figures if status != "failed" else _nan_figures(),
                   curve={"epoch": [1.0, 2.0, 3.0, 4.0], "val_auc": [0.6, 0.8, 0.92, 0.9],
                          "val_label_score": [0.3, 0.5, 0.6, 0.6]} if status != "failed" else {},
                   error="RuntimeError: boom" if status == "failed" else "")
    return check_floors(r, FLOORS)


def test_floors_judge_each_seed():
    assert fake(0, 0.95).verdict() == "pass"
    low = fake(1, 0.88, selection_gap=0.02)
    assert low.violations == ["kept_test_auc 0.8800 < 0.9", "selection_gap 0.0200 > 0.01"]
    assert low.verdict().startswith("below floor: kept_test_auc")
    missing = fake(2, 0.95, lab2_auc=math.nan)
    assert missing.verdict() == "pass" and missing.unchecked == ["lab2_auc"]
    assert fake(3, 0.0, status="failed").verdict() == "failed: RuntimeError: boom"
    assert Floors().rules() == []


def test_tables_summary_and_figure(tmp_path):
    results = [fake(0, 0.95), fake(1, 0.88), fake(2, 0.97, label_test_auc=math.nan), fake(3, 0, status="failed")]
    s = summarize(results)
    assert s["median"]["kept_test_auc"] == pytest.approx(0.95)  # the failed seed is not a zero
    assert (s["min"]["kept_test_auc"], s["max"]["kept_test_auc"]) == (0.88, 0.97)
    assert s["max"]["label_test_auc"] == pytest.approx(0.945)
    csv_path, md_path = write_tables(results, tmp_path, FLOORS, title="fake")
    rows = list(csv.DictReader(open(csv_path, newline="")))
    assert tuple(rows[0]) == stab.TABLE_COLUMNS
    assert [r["seed"] for r in rows] == ["0", "1", "2", "3", "median", "min", "max"]
    assert rows[2]["label_test_auc"] == "" and rows[3]["kept_test_auc"] == "" and rows[3]["epochs"] == ""
    assert rows[0]["epochs"] == "4" and rows[1]["verdict"].startswith("below floor")
    md = md_path.read_text()
    assert md.count("\n| **") == 3 and "| 3 |" in md and "failed: RuntimeError: boom" in md
    assert "**fail**: seed(s) 1 below a floor; seed(s) 3 failed" in md
    assert "| kept test AUC ≥ | 0.9 | 1 | 0.8800 | 1 |" in md
    table = markdown_table(results, FLOORS)
    assert "min val AUC after epoch 2" in table
    plot_curves(results, tmp_path / "curves.png", FLOORS, title="fake")
    with Image.open(tmp_path / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 1.5 * im.size[1]  # val_auc and val_label_score panels
    plot_curves([fake(5, 0, status="failed")], tmp_path / "empty.png", FLOORS)  # no curve at all still draws
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_a_result_survives_its_json_file():
    r = fake(4, 0.93, lab2_auc=math.nan)
    back = SeedResult.from_json(r.to_json())
    assert back.status == "resumed" and back.curve == r.curve and math.isnan(back.figures["lab2_auc"])
    assert back.figures["kept_test_auc"] == 0.93
    with pytest.raises(ValueError):
        SeedResult.from_json("{}")


# -- one seed, bundle runs replaced -------------------------------------------------------------------------
def weights(value: float) -> dict:
    return {"w": torch.full((2, 2), value), "b": torch.zeros(2)}


@pytest.fixture
def fabricated(tmp_path, monkeypatch):
    """A protocol whose training writes the contract's files, and whose evaluation gives an AUC per checkpoint."""
    (tmp_path / "home").mkdir()
    (tmp_path / "lab2").mkdir()
    protocol = StabilityProtocol(bundle=BUNDLE, dataset_dir=tmp_path / "home", seeds=(0, 1),
                                 configs=("train.json", "cpu.json"), second_lab_dir=tmp_path / "lab2", floors=FLOORS)
    calls: dict[str, list] = {"train": [], "evaluate": []}

    def train(p, seed, train_dir, overrides):
        calls["train"].append(seed)
        if seed == 9:
            raise RuntimeError("Failed to evaluate ConfigExpression") from ValueError("no normal training slide")
        models = train_dir / "models"
        models.mkdir(parents=True)
        torch.save(weights(2.0), models / "model.pt")
        torch.save(weights({0: 1.0, 2: 3.0}.get(seed, 2.0)), models / "model_label.pt")
        last = {"model": weights(3.0), "optimizer": {}}
        if seed == 3:  # a training that keeps a weight average: validation and model.pt use the average
            last["ema"] = {"module": weights(4.0), "updates": 12}
        torch.save(last, models / "checkpoint_epoch=4.pt")
        (train_dir / "validation.csv").write_text("epoch,val_auc,val_label_score\n1,0.6,0.2\n2,0.7,0.4\n"
                                                  "3,0.95,0.5\n4,0.9,0.6\n")

    def evaluate(p, ckpt, out_dir, dataset_dir, overrides, threshold=None):
        calls["evaluate"].append((ckpt.name, out_dir.name, dataset_dir.name, threshold))
        out_dir.mkdir(parents=True, exist_ok=True)
        auc = {"model.pt": 0.95, "model_label.pt": 0.93, "checkpoint_epoch=4.pt": 0.9,
               "last_ema.pt": 0.91}[ckpt.name]
        return auc - (0.1 if dataset_dir.name == "lab2" else 0.0), 0.4

    monkeypatch.setattr(stab, "_train", train)
    monkeypatch.setattr(stab, "_evaluate", evaluate)
    return protocol, calls, tmp_path / "out"


def test_one_seed_on_the_contracts_files(fabricated):
    protocol, calls, out = fabricated
    r = stab.run_seed(protocol, 0, out)
    assert r.status == "done" and r.error == ""
    f = r.figures
    assert (f["kept_test_auc"], f["last_test_auc"], f["label_test_auc"]) == (0.95, 0.9, 0.93)
    assert f["selection_gap"] == pytest.approx(0.02) and f["lab2_auc"] == pytest.approx(0.85)
    assert (f["best_epoch"], f["min_val_after_warmup"], f["final_val"]) == (3, 0.9, 0.9)
    assert ("model.pt", "lab2_kept", "lab2", 0.4) in calls["evaluate"]  # the home threshold goes to lab 2
    assert check_floors(r, FLOORS).violations == ["selection_gap 0.0200 > 0.01"]
    assert (out / "seed_0" / "result.json").is_file()
    # seed 1: slide labels chose the kept weights, which are then evaluated once
    calls["evaluate"].clear()
    r1 = stab.run_seed(protocol, 1, out)
    assert r1.figures["label_test_auc"] == 0.95 and r1.figures["selection_gap"] == 0.0
    assert [c[1] for c in calls["evaluate"]] == ["eval_kept", "eval_last", "lab2_kept"]
    # seed 2: slide labels chose the last epoch; seed 3: the last epoch is evaluated with its weight average
    calls["evaluate"].clear()
    r2 = stab.run_seed(protocol, 2, out)
    assert r2.figures["label_test_auc"] == r2.figures["last_test_auc"] == 0.9
    assert [c[1] for c in calls["evaluate"]] == ["eval_kept", "eval_last", "lab2_kept"]
    calls["evaluate"].clear()
    assert stab.run_seed(protocol, 3, out).figures["last_test_auc"] == 0.91
    assert ("last_ema.pt", "eval_last", "home", None) in calls["evaluate"]
    # a rerun reads them back
    calls["train"].clear()
    calls["evaluate"].clear()
    assert stab.run_seed(protocol, 0, out).status == "resumed" and calls == {"train": [], "evaluate": []}


def test_older_training_outputs_and_a_failing_seed(fabricated, monkeypatch):
    protocol, _, out = fabricated
    train = stab._train

    def older(p, seed, train_dir, overrides):  # a bundle from before model_label.pt and validation.csv
        train(p, seed, train_dir, overrides)
        (train_dir / "models" / "model_label.pt").unlink()
        (train_dir / "validation.csv").unlink()

    monkeypatch.setattr(stab, "_train", older)
    r = stab.run_seed(protocol, 0, out)
    assert r.status == "done" and r.figures["kept_test_auc"] == 0.95
    for key in ("label_test_auc", "selection_gap", "best_epoch", "min_val_after_warmup", "final_val"):
        assert math.isnan(r.figures[key]), key
    assert any("model_label.pt" in n for n in r.notes) and any("validation.csv" in n for n in r.notes)
    assert sorted(check_floors(r, FLOORS).unchecked) == ["min_val_after_warmup", "selection_gap"]

    failed = stab.run_seed(protocol, 9, out)
    assert failed.status == "failed" and failed.error == "ValueError: no normal training slide"
    assert not (out / "seed_9" / "result.json").exists()


def test_a_seed_killed_during_evaluation_is_not_trained_again(fabricated, monkeypatch):
    protocol, calls, out = fabricated
    evaluate = stab._evaluate

    def dies_on_lab2(p, ckpt, out_dir, *a, **k):
        if out_dir.name == "lab2_kept":
            raise OSError("disk full")
        return evaluate(p, ckpt, out_dir, *a, **k)

    monkeypatch.setattr(stab, "_evaluate", dies_on_lab2)
    assert stab.run_seed(protocol, 0, out).status == "failed"
    monkeypatch.setattr(stab, "_evaluate", evaluate)
    calls["train"].clear()
    assert stab.run_seed(protocol, 0, out).status == "done" and calls["train"] == []


def test_run_stability_writes_the_study(fabricated):
    protocol, _, out = fabricated
    results = stab.run_stability(protocol, out)
    assert [r.seed for r in results.seeds] == [0, 1] and not results.failed
    assert [r.seed for r in results.below_floor] == [0] and not results.passed
    assert results.csv.is_file() and results.markdown.is_file() and results.plot.is_file()
