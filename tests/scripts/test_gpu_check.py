"""The GPU check's pieces, run on the CPU: backend comparison, DDP on Gloo, the report table, the script's syntax."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from monai_wsseg.bench.gpu_report import ROWS, report
from monai_wsseg.bench.reader_check import compare_backends
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import PROJECT_ROOT, smooth_rgb

SCRIPT = PROJECT_ROOT / "scripts" / "gpu_check.sh"


def test_backends_read_the_same_pixels_and_a_missing_one_is_reported(tmp_path):
    pytest.importorskip("openslide")
    slide = write_pyramidal_tiff(tmp_path / "s.tif", smooth_rgb(1024, 1536, seed=2), 0.5)
    out = compare_backends(str(slide), ["openslide", "tifffile", "cucim"], regions=4, size=256)
    assert out["backends"]["openslide"]["reference"] and out["backends"]["openslide"]["mpx_s"] > 0
    assert out["backends"]["tifffile"]["max_abs_diff"] <= 2  # the same JPEG tiles, two libjpeg-turbo builds
    cucim = out["backends"]["cucim"]
    assert "skipped" in cucim or "max_abs_diff" in cucim


def test_ddp_check_runs_two_gloo_processes(tmp_path):
    out = tmp_path / "ddp.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "monai_wsseg.bench.ddp_check", "--steps", "1", "--batch", "2", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["backend"] == "gloo" and result["world_size"] == 2
    assert result["all_reduce_ok"] and result["replicas_identical"]


def test_the_report_shows_values_and_failed_steps(tmp_path):
    (tmp_path / "inference.json").write_text(json.dumps({"a_model_mpx_s": 283.4, "ratio_c_over_a": 0.4012}))
    (tmp_path / "steps.tsv").write_text("inference\t0\t95\ntrain_mil\t1\t12\nlarge\t124\t200\n")
    table, everything = report(tmp_path)
    assert "| ResNet50 FCN model only, Mpx/s | 283.4 |" in table
    assert "| end to end ÷ model only | 0.401 |" in table
    assert "| MIL training ratio | failed (exit 1) |" in table
    assert "| large slide end to end (tiny FCN), s | timed out |" in table
    assert "| DDP backend / world size | not run |" in table
    assert "| reading alone, Mpx/s | — |" in table  # the step ran but did not measure it
    assert everything["steps"]["large"] == (124, 200.0) and len(table.splitlines()) == len(ROWS) + 6
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == len(ROWS) + 1 and all(line.count("|") == 3 for line in rows)  # no cell split by a "|"


def test_the_script_refuses_a_python_without_the_project(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH="", PYTHONNOUSERSITE="1")
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env["PYTHON"] = str(fake)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "cannot import torch and monai_wsseg" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_script_parses_and_names_only_what_exists():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    text = SCRIPT.read_text()
    for script in re.findall(r"scripts/(\w+\.py)", text):
        assert (PROJECT_ROOT / "scripts" / script).exists(), script
    for module in re.findall(r"-m (monai_wsseg[\w.]+)", text):
        assert (PROJECT_ROOT / (module.replace(".", "/") + ".py")).exists(), module
