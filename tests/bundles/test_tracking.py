"""Run tracking: TensorBoard by default; MLflow through MONAI's ``MLFlowHandler`` behind one config flag,
``--use_mlflow true``, in every train workflow (the MIL trainer and the WSSS classifier and segmenter).

The flag's handlers are checked in every workflow without MLflow; a tracked one-epoch MIL run needs the
``mlflow`` extra (``pip install -e ".[mlflow]"``) and skips cleanly without it.
"""

from __future__ import annotations

import importlib.util
import sqlite3

import pytest

from monai_wsseg.engines.tracking import step_loss
from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import PROJECT_ROOT

BUNDLES = PROJECT_ROOT / "bundles"
MIL = BUNDLES / "mil_tumor_segmentation" / "configs"
WSSS = BUNDLES / "wsss_tissue_segmentation" / "configs"
TRAIN_WORKFLOWS = {
    "mil": [MIL / "train.json", MIL / "cpu.json"],
    "wsss_cls": [WSSS / "train_cls.json", WSSS / "cpu.json"],
    "wsss_seg": [WSSS / "train_seg.json", WSSS / "cpu_seg.json"],
}
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


def parser_of(files, **override):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update(override)
    return parser


def mlflow_ids(parser) -> list[str]:
    """Config IDs of the MLflow handlers in the trainer's and the validator's handler lists."""
    return [f"{group}#handlers#{i}" for group in ("train", "validate")
            for i, h in enumerate(parser[f"{group}#handlers"]) if h["_target_"] == "MLFlowHandler"]


@pytest.mark.parametrize("name", list(TRAIN_WORKFLOWS))
def test_tensorboard_by_default_and_mlflow_behind_one_flag(name, tmp_path):
    plain = parser_of(TRAIN_WORKFLOWS[name], output_dir=str(tmp_path))
    assert "TensorBoardStatsHandler" in [h["_target_"] for h in plain["train#handlers"]]
    ids = mlflow_ids(plain)
    assert [i.split("#")[0] for i in ids] == ["train", "validate"]  # one for the losses, one for the metrics
    assert all(plain.get_parsed_content(i) is None for i in ids)  # disabled: never imports mlflow

    if not HAS_MLFLOW:
        return
    tracked = parser_of(TRAIN_WORKFLOWS[name], output_dir=str(tmp_path), use_mlflow=True)
    handlers = [tracked.get_parsed_content(i) for i in ids]
    assert [type(h).__name__ for h in handlers] == ["MLFlowHandler", "MLFlowHandler"]
    assert handlers[0].experiment_name == handlers[1].experiment_name == tracked["mlflow_experiment"]
    assert handlers[0].artifact_location.startswith(tmp_path.as_uri())  # kept beside the run, not in the cwd


def test_step_loss_reads_every_trainer_output_shape():
    import torch

    assert step_loss({"loss": torch.tensor(0.25)}) == 0.25  # no decollation (MIL, WSSS segmenter)
    assert step_loss([{"loss": torch.tensor(0.5)}, {"loss": torch.tensor(0.5)}]) == 0.5  # decollated batch
    assert step_loss({}) is None  # a MIL step whose slides were all unreadable: nothing to log


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed (pip install -e '.[mlflow]' to test MLflow tracking)")
def test_a_tracked_mil_epoch_logs_loss_and_validation_auc(tmp_path):
    from monai.bundle import ConfigWorkflow

    cohort = tmp_path / "cohort"
    make_cohort(cohort, n_tumor=2, n_normal=2, size=(512, 512), seed=3, splits=["train", "val", "train", "val"])
    out = tmp_path / "run"
    wf = ConfigWorkflow(config_file=[str(f) for f in TRAIN_WORKFLOWS["mil"]], meta_file=str(MIL / "metadata.json"),
                        logging_file=False, workflow_type="train", run_id="training", use_mlflow=True,
                        dataset_dir=str(cohort), output_dir=str(out), num_epochs=1, backbone="resnet18", bag_size=4,
                        patch_size=32, mpp=2.0, num_workers=0, infer_tile=256, infer_halo=32, infer_batch_size=2,
                        tissue_mpp=16.0)
    wf.initialize()
    wf.run()
    wf.finalize()
    with sqlite3.connect(out / "mlruns.db") as db:
        keys = {k for (k,) in db.execute("select distinct key from metrics")}
    assert {"train_loss", "val_auc"} <= keys, keys
