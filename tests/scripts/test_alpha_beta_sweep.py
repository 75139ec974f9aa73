"""scripts/alpha_beta_sweep.py, the command-line face of monai_wsseg.mil.sweep: bad input refused in one line, and
an end-to-end sweep of two configurations on a 6-slide synthetic cohort (1 epoch, tiny bags), resumed without
retraining. The grid, the definition, the tables and the figure are tested in tests/mil/test_sweep.py."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from monai_wsseg.mil import sweep as sweep_module
from monai_wsseg.mil.sweep_tables import FIGURES, read_tables
from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import load_script

script = load_script("alpha_beta_sweep")

# The bundle test's TINY settings: 4 patches of 32 px per bag, small inference tiles, no worker processes.
TINY = ["--backbone", "resnet18", "--bag_size", "4", "--patch_size", "32", "--mpp", "2.0", "--num_workers", "0",
        "--infer_tile", "256", "--infer_halo", "32", "--infer_batch_size", "2", "--tissue_mpp", "16.0"]


# -- the command line ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, problem", [
    (["--", "--alpha", "0.4"], "['alpha'] are set by the sweep"),  # the sweep sets alpha itself
    (["--", "--nosuch#key", "1"], "['nosuch#key']: neither the training nor the evaluation"),
    (["--configs", "0.6,0.6"], "--configs: (0.6, 0.6) is outside the framework"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--sweep", "no_such_sweep.json"], "no_such_sweep.json: sweep definition file not found"),
])
def test_bad_input_is_refused_in_one_line(tmp_path, capsys, args, problem):
    with pytest.raises(SystemExit) as exc:
        script.main(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--profile", "cpu",
                     *args])
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("alpha_beta_sweep.py: error: ") and problem in error
    assert not (tmp_path / "out").exists()  # nothing ran


def check_png(path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        im.verify()
    assert w > 3 * h  # four panels side by side


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
    return out, args, script.main(args)


def test_a_sweep_trains_evaluates_and_tabulates(swept):
    out, _, code = swept
    assert code == 0
    rows = read_tables(out / "sweep.csv")
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
    before = read_tables(out / "sweep.csv")

    def no_training(definition, alpha, beta, *_):
        if (alpha, beta) != (0.4, 0.2):
            raise AssertionError(f"({alpha}, {beta}) was trained again")
        raise RuntimeError("a broken configuration")

    monkeypatch.setattr(sweep_module, "train_config", no_training)
    monkeypatch.setattr(sweep_module, "evaluate_config", lambda *a: pytest.fail("evaluated again"))
    configs = args.index("--configs") + 1
    rerun = list(args)
    rerun[configs] = "0.2,0.2;0.4,0.2;1.0,0"
    assert script.main(rerun) == 1  # the failed configuration sets the exit code
    assert {p: p.stat().st_mtime_ns for p in evaluations} == evaluations
    rows = read_tables(out / "sweep.csv")
    assert [(r["alpha"], r["beta"], r["status"]) for r in rows] == [
        (0.2, 0.2, "resumed"), (0.4, 0.2, "failed"), (1.0, 0.0, "resumed")]
    assert "a broken configuration" in rows[1]["error"] and math.isnan(rows[1]["auc_without_background"])
    for old, new in zip(before, (rows[0], rows[2]), strict=True):
        for key in (*FIGURES, "train_seconds"):
            assert new[key] == pytest.approx(old[key])  # figures and training time read back unchanged
    log = (out / "sweep.log").read_text()
    assert "[2/3] alpha=0.4 beta=0.2: failed" in log and "1 configuration(s) failed" in log

