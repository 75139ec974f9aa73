"""Ignite pieces the bundles wire into their training, validation and inference workflows.

Generic, used by both methods' bundles:

* :mod:`.checkpoints` — checkpoints that survive ``kill -9`` and resuming that refuses pickled code;
* :mod:`.run_record` — ``run.json``, how a run was made; :mod:`.metrics_table` — ``validation.csv``;
* :mod:`.tracking` — a training step's loss, for the stats, TensorBoard and MLflow handlers;
  :mod:`.averaging` — an EMA of the weights;
* :mod:`.schedules` — learning-rate schedules by name; :mod:`.epochs` — the dataset told each epoch's start;
* :mod:`.precision` — MONAI's supervised trainer and evaluator at a chosen precision (bf16 on CPUs too).

Each method's own engine pieces live with it: :mod:`monai_wsseg.mil` (paper A), :mod:`monai_wsseg.wsss`
(paper B); cohort inference as an engine with the cohort loop, in :mod:`monai_wsseg.inference.evaluator`.

Names are imported on first use (:mod:`monai_wsseg.utils.lazy`): every module here imports Ignite, torch
or MONAI, and ``import monai_wsseg.engines.run_record`` should pay only for its own.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "averaging": ("WeightEMA",),
    "checkpoints": ("AtomicCheckpointSaver", "ResumeCheckpointLoader", "latest_checkpoint"),
    "epochs": ("start_dataset_epoch",),
    "metrics_table": ("ValidationTable",),
    "precision": ("PrecisionEvaluator", "PrecisionTrainer", "engine_precision"),
    "run_record": ("record_run",),
    "schedules": ("SCHEDULES", "lr_scheduler"),
    "tracking": ("step_loss",),
})
