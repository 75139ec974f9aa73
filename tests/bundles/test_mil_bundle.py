"""The MIL bundle through MONAI's own entry point: train, resume, infer, evaluate, DDP under torchrun.

Every run uses ``python -m monai.bundle`` exactly as a user types it, on a 6-slide synthetic cohort of
1024² px slides, with the CPU profile shrunk further (4 patches of 32 px per bag, 1 epoch).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import pytest

from monai_wsseg.engines.checkpoints import latest_checkpoint
from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import PROJECT_ROOT

BUNDLE = PROJECT_ROOT / "bundles" / "mil_tumor_segmentation"
CONFIGS = BUNDLE / "configs"
TINY = ["--backbone", "resnet18", "--bag_size", "4", "--patch_size", "32", "--mpp", "2.0", "--num_workers", "0",
        "--infer_tile", "256", "--infer_halo", "32", "--infer_batch_size", "2", "--tissue_mpp", "16.0"]


def config_files(*names: str) -> str:
    return "[" + ",".join(f"'{CONFIGS / n}'" for n in names) + "]"


def bundle(run_id: str, files: list[str], *args: str, launcher: list[str] | None = None, check: bool = True):
    cmd = (launcher or [sys.executable]) + ["-m", "monai.bundle", "run", run_id, "--bundle_root", str(BUNDLE),
                                            "--config_file", config_files(*files), *args]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("mil_cohort")
    splits = ["train", "val", "test", "train", "val", "test"]  # tumor slides first
    make_cohort(root, n_tumor=3, n_normal=3, size=(1024, 1024), seed=4, splits=splits)
    return root


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("mil_run")
    proc = bundle("training", ["train.json", "cpu.json"], "--dataset_dir", str(cohort), "--output_dir", str(out),
                  "--num_epochs", "1", *TINY)
    return out, proc


def test_training_writes_the_best_model_and_the_run_record(trained):
    out, proc = trained
    assert (out / "models" / "model.pt").is_file()
    assert (out / "models" / "checkpoint_epoch=1.pt").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["profile"].startswith("cpu") and run["settings"]["bag_size"] == 4
    # cpu.json trains in fp32 (bf16 training failed the hard cohort's floors on 3 seeds of 5); maps use auto
    training, maps = run["settings"]["precision"], run["settings"]["inference_precision"]
    assert training == {"precision": "fp32", "requested": "fp32", "device": "cpu", "channels_last": False}
    assert maps["requested"] == "auto" and maps["precision"] in ("bf16", "fp32")
    assert "val_auc" in proc.stdout + proc.stderr
    assert list((out / "logs").glob("events.out.tfevents.*"))


def test_training_resumes_from_the_last_checkpoint(trained, cohort):
    out, _ = trained
    proc = bundle("training", ["train.json", "cpu.json"], "--dataset_dir", str(cohort), "--output_dir", str(out),
                  "--train#trainer#max_epochs", "2", *TINY)
    log = proc.stdout + proc.stderr
    assert "Epoch: 2/2" in log and "Epoch: 1/2" not in log  # epoch 1 was restored, not redone
    assert (out / "models" / "checkpoint_epoch=2.pt").is_file()
    assert latest_checkpoint(out / "models").endswith("checkpoint_epoch=2.pt")  # what a third run resumes from


def test_inference_writes_maps_for_every_slide(trained, cohort, tmp_path):
    out, _ = trained
    maps = tmp_path / "maps"
    bundle("run", ["inference.json", "cpu.json"], "--dataset_dir", str(cohort), "--output_dir", str(maps),
           "--ckpt_path", str(out / "models" / "model.pt"), *TINY)
    stems = sorted(p.stem for p in (cohort / "slides").glob("*.tif"))
    for suffix in (".tif", ".png", ".geojson"):
        assert sorted(p.stem for p in maps.glob(f"*{suffix}")) == stems
    assert not [p for p in maps.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_evaluation_writes_the_tables(trained, cohort, tmp_path):
    out, _ = trained
    ev = tmp_path / "evaluation"
    bundle("run", ["inference.json", "cpu.json", "evaluate.json"], "--dataset_dir", str(cohort),
           "--output_dir", str(ev), "--ckpt_path", str(out / "models" / "model.pt"), *TINY)
    rows = list(csv.DictReader(open(ev / "evaluation.csv", newline="")))
    slides = [r for r in rows if r["scope"] == "slide"]
    assert len(slides) == 2  # the two test slides
    assert "threshold" in (ev / "evaluation.md").read_text().lower()


def test_a_cohort_without_normal_training_slides_is_refused(tmp_path):
    root = tmp_path / "c"
    make_cohort(root, n_tumor=2, n_normal=1, size=(256, 256), seed=1, splits=["train", "val", "val"])
    proc = bundle("training", ["train.json", "cpu.json"], "--dataset_dir", str(root), "--output_dir",
                  str(tmp_path / "o"), *TINY, check=False)
    assert proc.returncode != 0
    assert "split 'train': 1 slide(s) but none normal (label 0); MIL training needs both" in proc.stderr + proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_gpu_overlay_runs_an_epoch_with_two_cpu_processes(cohort, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(_free_port())]
    proc = bundle("training", ["train.json", "cpu.json", "multi_gpu_train.json"], "--dataset_dir", str(cohort),
                  "--output_dir", str(out), "--num_epochs", "1", *TINY, launcher=launcher)
    assert (out / "models" / "model.pt").is_file()
    assert json.loads((out / "run.json").read_text())["settings"]["world_size"] == 2
    log = proc.stdout + proc.stderr
    # 2 train slides (one per label) × 4 bags each in balanced steps of 2 bags: 4 steps, 2 per rank; rank 1 logs nothing
    assert log.count("Epoch: 1/1, Iter: 2/2") == 1 and "Iter: 3/" not in log


def test_metadata_passes_verify_metadata_offline(tmp_path):
    from monai.bundle import verify_metadata

    schema = PROJECT_ROOT / "monai_wsseg" / "bundle" / "metadata_schema.json"
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(schema))
    broken = json.loads((CONFIGS / "metadata.json").read_text())
    del broken["network_data_format"]["inputs"]["image"]["num_channels"]
    (tmp_path / "m.json").write_text(json.dumps(broken))
    with pytest.raises(Exception, match="num_channels"):
        verify_metadata(meta_file=str(tmp_path / "m.json"), filepath=str(schema))
