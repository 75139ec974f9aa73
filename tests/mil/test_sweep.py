"""The (α, β) sweep of paper A (monai_wsseg.mil.sweep, .sweep_tables): its run definition, its grid, its tables
and figure on fake results, and which overrides reach which step. The end-to-end sweep is in
tests/scripts/test_alpha_beta_sweep.py."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from monai_wsseg.bundle.runs import applicable, parse_overrides
from monai_wsseg.mil import sweep, sweep_tables
from tests.conftest import PROJECT_ROOT

DEFINITION = PROJECT_ROOT / "configs" / "sweep" / "alpha_beta.json"
PAPER = {(a / 10, b / 10) for a in (2, 4, 6, 8, 10) for b in (0, 2, 4, 6, 8) if a + b <= 10}


@pytest.fixture(scope="module")
def definition() -> sweep.SweepDefinition:
    return sweep.load_sweep(DEFINITION)


# -- the run definition and the grid -----------------------------------------------------------------------------
def test_the_grid_is_the_papers_15_configurations(definition):
    grid = definition.grid()
    assert len(grid) == 15 and set(grid) == PAPER
    assert (0.2, 0.8) in grid and (1.0, 0.0) in grid and (0.6, 0.4) in grid  # 0.6 + 0.4 > 1 in floats
    assert not any(a == 0 for a, _ in grid)  # α = 0 would give only normal labels: discarded by the paper
    assert grid == sorted(grid)  # α-major, as the tables list them
    assert sweep.config_name(0.2, 0.2) == "a0.2_b0.2" and sweep.config_name(1.0, 0.0) == "a1.0_b0.0"
    assert sweep.config_name(0.25, 0.05) == "a0.25_b0.05"


def test_the_definition_names_the_bundle_and_its_configs_per_profile(definition):
    assert definition.bundle == (PROJECT_ROOT / "bundles" / "mil_tumor_segmentation").resolve()
    assert [f.name for f in definition.train_files("cpu")] == ["train.json", "cpu.json"]
    assert [f.name for f in definition.eval_files("cpu")] == ["inference.json", "cpu.json", "evaluate.json"]
    assert [f.name for f in definition.train_files("gpu")] == ["train.json"]
    assert [f.name for f in definition.eval_files("gpu")] == ["inference.json", "evaluate.json"]
    assert definition.quick_cohort["size"] == (2048, 2048) and definition.quick_overrides["num_epochs"] == 3


def _write(tmp_path, **changes):
    data = json.loads(DEFINITION.read_text())
    data["root"] = str(PROJECT_ROOT)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("changes, problem", [
    ({"alphas": [0.2, "x"]}, "alphas[1]: must be a finite number"),
    ({"alphas": [0.0, 0.2]}, "alphas[0]: must be in (0, 1]"),
    ({"betas": [0.4, 0.2]}, "betas: must be increasing"),
    ({"betas": None}, "missing key(s) ['betas']"),
    ({"alpha": [0.2]}, "unknown key(s) ['alpha']"),
    ({"bundle": "bundles/no_such_bundle"}, "bundle: "),
    ({"configs": {"cpu": {"train": ["train.json"], "evaluate": ["nosuch.json"]},
                  "gpu": {"train": ["train.json"], "evaluate": ["evaluate.json"]}}}, "configs.cpu.evaluate: "),
    ({"configs": {"cpu": {"train": ["train.json"]}, "gpu": {}}}, "configs.cpu: missing key(s) ['evaluate']"),
    ({"quick": {"cohort": {"n_tumour": 4}}}, "quick.cohort: unknown key(s) ['n_tumour']"),
    ({"quick": {"overrides": {"alpha": 0.4}}}, "quick.overrides: ['alpha'] are set by the sweep"),
    ({"alphas": [0.8], "betas": [0.4]}, "no configuration with alpha + beta <= 1"),
])
def test_a_bad_definition_is_refused_in_one_line_naming_file_and_key(tmp_path, changes, problem):
    path = _write(tmp_path, **changes)
    with pytest.raises(ValueError) as exc:
        sweep.load_sweep(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_a_missing_or_broken_definition_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="sweep definition file not found"):
        sweep.load_sweep(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        sweep.load_sweep(tmp_path / "bad.json")


def test_configs_option():
    assert sweep.parse_configs("0.2,0.2;1.0,0") == [(0.2, 0.2), (1.0, 0.0)]
    assert sweep.parse_configs(" 0.4 , 0.2 ; ") == [(0.4, 0.2)]
    for bad in ("0.6,0.6", "0,0.2", "0.2,-0.2", "0.2", "0.2,0.2;0.2,0.2", ""):
        with pytest.raises(ValueError):
            sweep.parse_configs(bad)


def test_overrides_the_sweep_sets_itself_are_refused():
    args = ["--alpha", "0.4", "--net#x=[1, 2]", "--amp", "--lr", "-0.1", "--some-key", "abc", "--flag"]
    assert parse_overrides(args) == {"alpha": 0.4, "net#x": [1, 2], "amp": True, "lr": -0.1,
                                     "some_key": "abc", "flag": True}
    with pytest.raises(ValueError, match=r"\['alpha'\] are set by the sweep"):
        sweep.check_sweep_overrides({"alpha": 0.4})
    with pytest.raises(ValueError, match=r"\['run_id'\] select how the bundle runs"):
        sweep.check_sweep_overrides({"run_id": "x"})
    sweep.check_sweep_overrides({"bag_size": 4})


def test_overrides_go_where_the_config_has_a_place_for_them(definition):
    pairs = {"num_epochs": 2, "train#trainer#max_epochs": 3, "inferer#progress": True, "threshold": 0.4}
    assert applicable(pairs, definition.train_files("cpu")) == {"num_epochs": 2, "train#trainer#max_epochs": 3,
                                                                 "threshold": 0.4}
    assert applicable(pairs, definition.eval_files("cpu")) == {"num_epochs": 2, "inferer#progress": True,
                                                                "threshold": 0.4}
    with pytest.raises(ValueError, match=r"\['nosuch#key'\]: neither the training nor the evaluation"):
        sweep.check_applies(definition, {"nosuch#key": 1}, "cpu")
    sweep.check_applies(definition, pairs, "cpu")


# -- tables and figure on fake results ---------------------------------------------------------------------------
def fake_results(grid, missing: tuple[tuple[float, float], ...] = ()) -> list:
    out = []
    for a, b in grid:
        r = sweep_tables.ConfigResult(a, b, status="done", train_seconds=60.0 * a, eval_seconds=5.0)
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
def test_plot_and_tables(tmp_path, definition, missing):
    alphas, betas = definition.alphas, definition.betas
    results = fake_results(definition.grid(), missing)
    mats = sweep_tables.plot_matrix(results, tmp_path / "sweep.png", alphas, betas, title="fake")
    check_png(tmp_path / "sweep.png")
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.png"]  # no temporary file left
    assert set(mats) == {"auc_without_background", "precision", "recall", "f1"}
    for key, m in mats.items():
        assert m.shape == (5, 5)
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                expected = next((r.figures[key] for r in results if (r.alpha, r.beta) == (a, b)), math.nan)
                if a + b > 1 + 1e-9 or (a, b) in missing:
                    assert math.isnan(m[i, j]), (key, a, b)  # blank, never 0
                else:
                    assert m[i, j] == pytest.approx(expected), (key, a, b)
        assert np.isfinite(m).sum() == 15 - len(missing)

    csv_path, md_path = sweep_tables.write_tables(results, tmp_path)
    rows = list(csv.DictReader(open(csv_path, newline="")))
    assert len(rows) == 15 and tuple(rows[0]) == sweep_tables.TABLE_COLUMNS
    back = sweep_tables.read_tables(csv_path)
    for r, row in zip(results, back, strict=True):
        assert (row["alpha"], row["beta"]) == (r.alpha, r.beta)
        for key in sweep_tables.FIGURES:
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
    again = sweep_tables.plot_matrix(back, tmp_path / "again.png", alphas, betas)
    for key in mats:
        np.testing.assert_array_equal(np.isnan(again[key]), np.isnan(mats[key]))


def test_results_off_the_grid_have_no_cell(definition):
    results = fake_results([(0.2, 0.2), (0.3, 0.1)])
    mats = sweep_tables.matrices(results, definition.alphas, definition.betas)
    assert np.isfinite(mats["f1"]).sum() == 1 and mats["f1"][0, 1] == pytest.approx(results[0].figures["f1"])


def test_the_pooled_row_of_an_evaluation(tmp_path):
    path = tmp_path / "evaluation.csv"
    path.write_text("scope,auc_with_background,auc_without_background,precision,recall,f1,threshold\n"
                    "slide,0.1,0.1,0.1,0.1,0.1,0.1\npooled,0.9,0.8,0.7,0.6,,0.5\n")
    figures = sweep_tables.read_evaluation(path)
    assert figures["auc_without_background"] == 0.8 and figures["threshold"] == 0.5 and math.isnan(figures["f1"])
    path.write_text("scope,f1\nslide,0.1\n")
    with pytest.raises(ValueError, match="no 'pooled' row"):
        sweep_tables.read_evaluation(path)
