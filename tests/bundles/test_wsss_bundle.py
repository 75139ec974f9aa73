"""The WSSS bundle through ``python -m monai.bundle``: phase 1 (PDA classifier) on a tiny patch set."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from monai_wsseg.engines.checkpoints import latest_checkpoint
from monai_wsseg.synthetic.generator import make_patch_set
from tests.conftest import PROJECT_ROOT, real_file

BUNDLE = PROJECT_ROOT / "bundles" / "wsss_tissue_segmentation"
CONFIGS = BUNDLE / "configs"


def run_bundle(run_id, files, *args, launcher=(sys.executable,)):
    cmd = [*launcher, "-m", "monai.bundle", "run", run_id, "--bundle_root", str(BUNDLE), "--config_file",
           "[" + ",".join(f"'{CONFIGS / f}'" for f in files) + "]", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def test_three_phases_chain_through_the_output_folder(tmp_path):
    data = make_patch_set(tmp_path / "patches", n_train=8, n_val=4, n_test=4, size=64, seed=0)
    out = tmp_path / "run"
    common = ["--dataset_dir", str(data), "--output_dir", str(out), "--num_workers", "0"]
    log = run_bundle("training", ["train_cls.json", "cpu.json"], *common, "--num_epochs", "1", "--batch_size", "4")
    assert (out / "models" / "classifier.pt").is_file()
    assert "val_cls_auc" in log
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["pda_mode"] == "pda"
    assert settings["hed_sigma"] == 0 and settings["hed_bias"] == 0  # jitter slows the classifier (docs, Stability)
    assert (out / "models" / "classifier_checkpoint_epoch=1.pt").is_file()
    # a second run with more epochs resumes: epoch 1 is restored, not redone
    log = run_bundle("training", ["train_cls.json", "cpu.json"], *common, "--num_epochs", "2", "--batch_size", "4")
    assert "Epoch: 2/2" in log and "Epoch: 1/2" not in log
    assert latest_checkpoint(out / "models", "classifier_checkpoint").endswith("classifier_checkpoint_epoch=2.pt")

    run_bundle("run", ["pseudo_masks.json"], *common, "--width", "0.125")
    names = sorted(p.name for p in (data / "training").glob("*.png"))
    for layer in ("b4_3", "b5_2", "bn7"):
        masks = sorted((out / "pseudo" / layer).glob("*.png"))
        assert [m.name for m in masks] == names
        indices = np.unique(np.asarray(Image.open(masks[0])))
        assert set(indices.tolist()) <= {0, 1, 2, 3, 4}  # 4 classes + white background

    log = run_bundle("training", ["train_seg.json", "cpu_seg.json"], *common, "--num_epochs", "1", "--batch_size", "4")
    assert (out / "models" / "model.pt").is_file()
    assert "val_miou" in log and "train_loss: " in log  # the loss of a non-decollated batch is logged
    assert (out / "models" / "segmenter_checkpoint_epoch=1.pt").is_file()  # phase 2 did not resume phase 1's
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["hed_sigma"] > 0 and settings["hed_bias"] > 0  # the CPU segmenter jitters stains (0.5.3)

    run_bundle("run", ["evaluate.json", "cpu_seg.json"], *common, "--width", "0.125")
    rows = list(csv.DictReader(open(out / "evaluation" / "evaluation.csv", newline="")))
    assert [r["row"] for r in rows] == ["cam:b4_3", "cam:b5_2", "cam:bn7", "segmentation", "segmentation+gate"]
    for r in rows:
        assert 0 <= float(r["miou"]) <= 1 and 0 <= float(r["acc"]) <= 1
    assert "| miou |" in (out / "evaluation" / "evaluation.md").read_text()

    run_bundle("run", ["inference.json", "cpu_seg.json"], *common, "--width", "0.125")
    predicted = sorted((out / "predictions").glob("*.png"))
    assert [p.name for p in predicted] == sorted(p.name for p in (data / "test" / "img").glob("*.png"))
    assert set(np.unique(np.asarray(Image.open(predicted[0]))).tolist()) <= {0, 1, 2, 3, 4}

    slide = real_file("CMU-1-Small-Region.svs")  # a whole slide -> label map through the WSI engine
    run_bundle("run", ["inference.json", "cpu_seg.json"], *common, "--width", "0.125", "--slides_dir", str(slide))
    label_map = tifffile.imread(out / "predictions" / "CMU-1-Small-Region.tif", level=0)
    assert label_map.max() <= 255 and set(np.unique(label_map).tolist()) - {255} <= {0, 1, 2, 3}
    assert (out / "predictions" / "CMU-1-Small-Region.png").is_file()


def test_a_missing_pseudo_mask_folder_is_named(tmp_path):
    data = make_patch_set(tmp_path / "patches", n_train=4, n_val=2, n_test=2, size=64, seed=1)
    out = tmp_path / "run"
    (out / "pseudo" / "b4_3").mkdir(parents=True)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--bundle_root", str(BUNDLE), "--config_file",
           f"['{CONFIGS / 'train_seg.json'}','{CONFIGS / 'cpu_seg.json'}']", "--dataset_dir", str(data),
           "--output_dir", str(out), "--num_workers", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode != 0
    assert str(out / "pseudo" / "b5_2") in proc.stderr + proc.stdout


def test_multi_gpu_overlays_train_both_phases_with_two_cpu_processes(tmp_path):
    data = make_patch_set(tmp_path / "patches", n_train=8, n_val=2, n_test=2, size=64, seed=2)
    out = tmp_path / "ddp"
    common = ["--dataset_dir", str(data), "--output_dir", str(out), "--num_workers", "0", "--num_epochs", "1",
              "--batch_size", "2"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port))
    log = run_bundle("training", ["train_cls.json", "cpu.json", "multi_gpu_train_cls.json"], *common,
                     launcher=launcher)
    assert (out / "models" / "classifier.pt").is_file()
    assert json.loads((out / "run.json").read_text())["settings"]["world_size"] == 2
    # 8 patches, batch 2, 2 ranks: 2 iterations each, logged by rank 0 only.
    assert log.count("Epoch: 1/1, Iter: 2/2") == 1 and "Iter: 3/" not in log

    run_bundle("run", ["pseudo_masks.json"], "--dataset_dir", str(data), "--output_dir", str(out), "--width", "0.125")
    log = run_bundle("training", ["train_seg.json", "cpu_seg.json", "multi_gpu_train_seg.json"], *common,
                     launcher=launcher)
    assert (out / "models" / "model.pt").is_file()
    assert log.count("Epoch: 1/1, Iter: 2/2") == 1


def test_metadata_passes_verify_metadata_offline():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"),
                    filepath=str(PROJECT_ROOT / "monai_wsseg" / "bundle" / "metadata_schema.json"))
