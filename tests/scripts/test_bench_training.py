"""The training benchmark builds the bundle's trainer as configured and reports both rates (no timing asserts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_wsseg.bench.training import batch_patches
from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import load_script

script = load_script("bench_training")
TINY = ["backbone=resnet18", "bag_size=4", "patch_size=32", "mpp=2.0", "num_workers=0", "tissue_mpp=16.0"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_cohort")
    make_cohort(root, n_tumor=2, n_normal=2, size=(1024, 1024), seed=4, splits=["train", "val"] * 2)
    return root


def test_mil_benchmark_reports_pipeline_model_and_ratio(cohort, tmp_path, one_thread):
    out = tmp_path / "bench.json"
    sets = [a for kv in TINY for a in ("--set", kv)]
    result = script.main(["--bundle", "mil_tumor_segmentation", "--dataset_dir", str(cohort), "--steps", "2",
                          *sets, "--set", "precision=fp32", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["patches"] == result["patches"] == 2 * 2 * 4  # 2 steps of 2 bags of 4 patches (cpu.json)
    for key in ("pipeline_patches_s", "model_patches_s", "ratio", "peak_rss_mb"):
        assert np.isfinite(saved[key]) and saved[key] > 0, key
    assert saved["precision"]["precision"] == "fp32" and saved["workers"] == 0


def test_bad_input_is_refused_in_one_line(cohort, capsys):
    with pytest.raises(SystemExit) as exc:
        script.main(["--bundle", "mil_tumor_segmentation", "--dataset_dir", str(cohort), "--set", "bag_size"])
    assert exc.value.code == 2 and "is not KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--bundle", "mil_tumor_segmentation", "--dataset_dir", str(cohort), "--steps", "500",
                     *[a for kv in TINY for a in ("--set", kv)]])
    assert "batches per epoch" in capsys.readouterr().err


def test_patches_per_batch_counts_bags_and_patch_batches():
    import torch

    assert batch_patches({"image": torch.zeros(2, 5, 3, 8, 8)}) == 10
    assert batch_patches({"image": torch.zeros(4, 3, 8, 8)}) == 4
    assert batch_patches({"label": torch.zeros(2)}) == 0
