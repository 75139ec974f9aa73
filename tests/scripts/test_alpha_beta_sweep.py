"""The (α, β) sweep of paper A: its grid, its tables and figure on fake results, and an end-to-end sweep of
two configurations on a 6-slide synthetic cohort (1 epoch, tiny bags), resumed without retraining."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import load_script


sweep = load_script("alpha_beta_sweep")

# The bundle test's TINY settings: 4 patches of 32 px per bag, small inference tiles, no worker processes.
TINY = ["--backbone", "resnet18", "--bag_size", "4", "--patch_size", "32", "--mpp", "2.0", "--num_workers", "0",
        "--infer_tile", "256", "--infer_halo", "32", "--infer_batch_size", "2", "--tissue_mpp", "16.0"]
PAPER = {(a / 10, b / 10) for a in (2, 4, 6, 8, 10) for b in (0, 2, 4, 6, 8) if a + b <= 10}


# -- the grid and the command line ---------------------------------------------------------------------------
def test_the_grid_is_the_papers_15_configurations():
    grid = sweep.paper_grid()
    assert len(grid) == 15 and set(grid) == PAPER
    assert (0.2, 0.8) in grid and (1.0, 0.0) in grid and (0.6, 0.4) in grid  # 0.6 + 0.4 > 1 in floats
    assert not any(a == 0 for a, _ in grid)  # α = 0 would give only normal labels: discarded by the paper
    assert sweep.config_name(0.2, 0.2) == "a0.2_b0.2" and sweep.config_name(1.0, 0.0) == "a1.0_b0.0"


def test_configs_option():
    assert sweep.parse_configs("0.2,0.2;1.0,0") == [(0.2, 0.2), (1.0, 0.0)]
    assert sweep.parse_configs(" 0.4 , 0.2 ; ") == [(0.4, 0.2)]
    for bad in ("0.6,0.6", "0,0.2", "0.2,-0.2", "0.2", "0.2,0.2;0.2,0.2", ""):
        with pytest.raises(ValueError):
            sweep.parse_configs(bad)


def test_overrides_are_parsed_as_the_bundle_cli_parses_them():
    args = ["--alpha", "0.4", "--net#x=[1, 2]", "--amp", "--lr", "-0.1", "--some-key", "abc", "--flag"]
    assert sweep.parse_overrides(args) == {"alpha": 0.4, "net#x": [1, 2], "amp": True, "lr": -0.1,
                                           "some_key": "abc", "flag": True}
    with pytest.raises(ValueError):
        sweep.parse_overrides(["0.4"])
    with pytest.raises(SystemExit):  # the sweep sets alpha itself
        sweep.main(["--dataset_dir", "x", "--output_dir", "y", "--", "--alpha", "0.4"])


# -- tables and figure on fake results ---------------------------------------------------------------------------
def fake_results(missing: tuple[tuple[float, float], ...] = ()) -> list:
    out = []
    for a, b in sweep.paper_grid():
        r = sweep.ConfigResult(a, b, status="done", train_seconds=60.0 * a, eval_seconds=5.0)
        if (a, b) in missing:
            r.status, r.error = "failed", "RuntimeError: boom"
            r.train_seconds = r.eval_seconds = math.nan
        else:  # distinct values per cell and per figure, so a misplaced value shows
            r.figures = {"auc_with_background": 0.5 + a / 4 + b / 40, "auc_without_background": 0.4 + a / 4 + b / 20,
                         "precision": 1 - a / 2 + b / 10, "recall": a / 2 + b / 5, "f1": 0.3 + a / 5 + b / 7,
                         "threshold": 0.1 + b}
        out.append(r)
    return out


def check_png(path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        im.verify()
    assert w > 3 * h  # four panels side by side


@pytest.mark.parametrize("missing", [(), ((0.4, 0.2),)])
def test_plot_and_tables(tmp_path, missing):
    results = fake_results(missing)
    mats = sweep.plot_matrix(results, tmp_path / "sweep.png", title="fake")
    check_png(tmp_path / "sweep.png")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert set(mats) == {"auc_without_background", "precision", "recall", "f1"}
    for key, m in mats.items():
        assert m.shape == (5, 5)
        for i, a in enumerate(sweep.ALPHAS):
            for j, b in enumerate(sweep.BETAS):
                expected = next((r.figures[key] for r in results if (r.alpha, r.beta) == (a, b)), math.nan)
                if a + b > 1 + 1e-9 or (a, b) in missing:
                    assert math.isnan(m[i, j]), (key, a, b)  # blank, never 0
                else:
                    assert m[i, j] == pytest.approx(expected), (key, a, b)
        assert np.isfinite(m).sum() == 15 - len(missing)

    csv_path, md_path = sweep.write_tables(results, tmp_path)
    rows = list(csv.DictReader(open(csv_path, newline="")))
    assert len(rows) == 15 and tuple(rows[0]) == sweep.TABLE_COLUMNS
    back = sweep.read_tables(csv_path)
    for r, row in zip(results, back):
        assert (row["alpha"], row["beta"]) == (r.alpha, r.beta)
        for key in sweep.FIGURES:
            if r.status == "failed":
                assert math.isnan(row[key])
            else:
                assert row[key] == pytest.approx(r.figures[key])
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == len(missing)
    for row in failed:
        assert row["auc_without_background"] == "" and row["f1"] == "" and row["error"] == "RuntimeError: boom"
    md = md_path.read_text()
    assert md.count("\n| 0.") + md.count("\n| 1 |") == 15
    assert ("failed: RuntimeError: boom" in md) == bool(missing)
    # a re-plot from the CSV draws the same matrices
    again = sweep.plot_matrix(back, tmp_path / "again.png")
    for key in mats:
        np.testing.assert_array_equal(np.isnan(again[key]), np.isnan(mats[key]))


# -- end to end ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_cohort")
    make_cohort(root, n_tumor=3, n_normal=3, size=(1024, 1024), seed=4, splits=["train", "val", "test"] * 2)
    return root


@pytest.fixture(scope="module")
def swept(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_out")
    args = ["--dataset_dir", str(cohort), "--output_dir", str(out), "--configs", "0.2,0.2;1.0,0",
            "--profile", "cpu", "--epochs", "1", "--", *TINY]
    return out, args, sweep.main(args)


def test_a_sweep_trains_evaluates_and_tabulates(swept):
    out, _, code = swept
    assert code == 0
    rows = sweep.read_tables(out / "sweep.csv")
    assert [(r["alpha"], r["beta"]) for r in rows] == [(0.2, 0.2), (1.0, 0.0)]
    for r in rows:
        assert r["status"] == "done"
        for key in ("auc_with_background", "auc_without_background", "precision", "recall", "f1", "threshold"):
            assert math.isfinite(r[key]) and 0 <= r[key] <= 1, key
        assert r["train_seconds"] > 0
    for name, (a, b) in (("a0.2_b0.2", (0.2, 0.2)), ("a1.0_b0.0", (1.0, 0.0))):
        run = out / name
        assert (run / "evaluation" / "evaluation.csv").is_file() and (run / "models" / "model.pt").is_file()
        settings = json.loads((run / "run.json").read_text())["settings"]
        assert (settings["alpha"], settings["beta"], settings["bag_size"]) == (a, b, 4)  # overrides reached it
    check_png(out / "sweep.png")
    assert "| 0.2 | 0.2 |" in (out / "sweep.md").read_text()
    log = (out / "sweep.log").read_text()
    assert "train_loss" in log and "val_auc" in log  # MONAI's own loggers reach the sweep log too
    assert "[2/2] alpha=1 beta=0: done" in log


def test_a_rerun_reads_results_back_and_a_failure_does_not_stop_the_others(swept, monkeypatch):
    out, args, _ = swept
    evaluations = {p: p.stat().st_mtime_ns for p in out.glob("a*/evaluation/evaluation.csv")}
    assert len(evaluations) == 2
    before = sweep.read_tables(out / "sweep.csv")

    def no_training(alpha, beta, *_):
        if (alpha, beta) != (0.4, 0.2):
            raise AssertionError(f"({alpha}, {beta}) was trained again")
        raise RuntimeError("a broken configuration")

    monkeypatch.setattr(sweep, "train_config", no_training)
    monkeypatch.setattr(sweep, "evaluate_config", lambda *a: pytest.fail("evaluated again"))
    configs = args.index("--configs") + 1
    rerun = list(args)
    rerun[configs] = "0.2,0.2;0.4,0.2;1.0,0"
    assert sweep.main(rerun) == 1  # the failed configuration sets the exit code
    assert {p: p.stat().st_mtime_ns for p in evaluations} == evaluations
    rows = sweep.read_tables(out / "sweep.csv")
    assert [(r["alpha"], r["beta"], r["status"]) for r in rows] == [
        (0.2, 0.2, "resumed"), (0.4, 0.2, "failed"), (1.0, 0.0, "resumed")]
    assert "a broken configuration" in rows[1]["error"] and math.isnan(rows[1]["auc_without_background"])
    for old, new in zip(before, (rows[0], rows[2])):
        for key in sweep.FIGURES + ("train_seconds",):
            assert new[key] == pytest.approx(old[key])  # figures and training time read back unchanged
    log = (out / "sweep.log").read_text()
    assert "[2/3] alpha=0.4 beta=0.2: failed" in log and "1 configuration(s) failed" in log


def test_overrides_go_where_the_config_has_a_place_for_them():
    pairs = {"num_epochs": 2, "train#trainer#max_epochs": 3, "inferer#progress": True, "threshold": 0.4}
    assert sweep.applicable(pairs, sweep.train_files("cpu")) == {"num_epochs": 2, "train#trainer#max_epochs": 3,
                                                                  "threshold": 0.4}
    assert sweep.applicable(pairs, sweep.eval_files("cpu")) == {"num_epochs": 2, "inferer#progress": True,
                                                                 "threshold": 0.4}
    with pytest.raises(SystemExit):
        sweep._check_applies({"nosuch#key": 1}, "cpu")
