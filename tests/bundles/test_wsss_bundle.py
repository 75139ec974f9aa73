"""The WSSS bundle through ``python -m monai.bundle``: phase 1 (PDA classifier) on a tiny patch set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from monai_wsseg.data.synthetic import make_patch_set
from tests.conftest import PROJECT_ROOT

BUNDLE = PROJECT_ROOT / "bundles" / "wsss_tissue_segmentation"
CONFIGS = BUNDLE / "configs"


def run_bundle(run_id, files, *args):
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--bundle_root", str(BUNDLE), "--config_file",
           "[" + ",".join(f"'{CONFIGS / f}'" for f in files) + "]", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def test_phase1_trains_with_the_mu_schedule_and_keeps_the_best_classifier(tmp_path):
    data = make_patch_set(tmp_path / "patches", n_train=8, n_val=4, n_test=4, size=64, seed=0)
    out = tmp_path / "run"
    log = run_bundle("training", ["train_cls.json", "cpu.json"], "--dataset_dir", str(data), "--output_dir", str(out),
                     "--num_epochs", "1", "--num_workers", "0", "--batch_size", "4")
    assert (out / "models" / "classifier.pt").is_file()
    assert "val_cls_auc" in log
    assert json.loads((out / "run.json").read_text())["settings"]["pda_mode"] == "pda"
