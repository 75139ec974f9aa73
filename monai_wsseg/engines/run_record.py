"""``run.json``: how a training run was made (profile, seed, settings, library versions)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.utils.output_dir import check_output_dir
from monai_wsseg.utils.precision import resolve_precision

__all__ = ["record_run"]


def record_run(output_dir: str | Path, profile: str, **settings) -> Path:
    """Write ``output_dir/run.json``: the profile, seed and settings a run used, with library versions.

    ``precision`` (training) and ``inference_precision`` settings are recorded resolved
    (:func:`~monai_wsseg.utils.precision.resolve_precision`: ``auto`` → what it means on this machine).

    Called once at the start of training so a run folder always says how it was made (the bundle
    docs ask users to quote the profile with their figures), after checking that the folder is
    writable and has room (:func:`~monai_wsseg.utils.output_dir.check_output_dir`).
    """
    import monai  # here, not at module level: record_run is cheap to import

    out = check_output_dir(output_dir)  # a full or read-only disk stops the run now, not at the first checkpoint
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(settings.get("precision"), str):  # the training setting and what it means on this machine
        settings["precision"] = resolve_precision(settings["precision"], device).for_training().as_dict()
    if isinstance(settings.get("inference_precision"), str):  # validation maps
        settings["inference_precision"] = resolve_precision(settings["inference_precision"], device).as_dict()
    info = {"profile": profile, "settings": settings, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__},
            "device": "cuda" if device == "cuda" else f"cpu ({os.cpu_count()} cores)"}
    return write_text_atomically(out / "run.json", json.dumps(info, indent=2, default=str) + "\n")
