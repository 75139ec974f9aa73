"""Benchmark a bundle's training step as configured, against the same steps on batches held in memory.

The bundle's training config (and overlays) is parsed as ``monai.bundle run training`` would, and its
``train#trainer`` built: the same data loader (bags read from slides, or patches read from files, with the
profile's augmentation and stain normalisation, in its DataLoader workers), network, loss, optimiser and
precision. Then:

* pipeline — ``steps`` iterations straight from the loader: reading, augmentation, forward, loss, backward,
  update (after ``warmup`` iterations that are not timed);
* model — the same iterations again on the batches the pipeline produced, kept in memory: forward, loss,
  backward, update only.

``ratio = pipeline_patches_s / model_patches_s``: 1 means reading and augmentation are hidden behind the
network (DESIGN.md asks for ≥ 0.8). Memory is the peak resident set of this process and of its workers.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["batch_patches", "run_training_benchmark"]


def batch_patches(batch: Mapping[str, Any]) -> int:
    """Patches in one training batch: ``B·N`` for MIL bags ``(B, N, 3, P, P)``, ``B`` for patches ``(B, 3, P, P)``."""
    image = batch.get("image") if isinstance(batch, Mapping) else None
    if not isinstance(image, torch.Tensor):
        return 0
    return int(image.shape[0] * image.shape[1]) if image.ndim == 5 else int(image.shape[0])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _trainer(config_files: Sequence[str | os.PathLike], overrides: Mapping[str, Any]) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(f=[str(f) for f in config_files])
    parser.update(dict(overrides))
    return parser.get_parsed_content("train#trainer")


def run_training_benchmark(config_files: Sequence[str | os.PathLike], overrides: Mapping[str, Any], *,
                           steps: int = 6, warmup: int = 1) -> dict[str, Any]:
    """Time ``steps`` training iterations through the bundle's loader and again on the same batches in memory.

    Args:
        config_files: the bundle's ``train*.json`` and its overlays (e.g. ``cpu.json``), in order.
        overrides: config values as on the command line (``dataset_dir``, ``device`` ...); ``output_dir``
            defaults to a temporary folder.
        steps: timed iterations (each phase).
        warmup: untimed iterations first (worker start-up, allocator, kernel selection).

    Raises:
        ValueError: the loader gives fewer than ``warmup + steps`` batches in one epoch.
    """
    with tempfile.TemporaryDirectory(prefix="wsseg-bench-") as tmp:
        settings = {"output_dir": tmp} | dict(overrides)
        trainer = _trainer(config_files, settings)
        device = torch.device(trainer.state.device)
        loader = trainer.data_loader
        if hasattr(getattr(loader, "dataset", None), "set_epoch"):
            loader.dataset.set_epoch(1)
        trainer.state.epoch, trainer.state.iteration = 1, 0
        batches: list[Any] = []
        start = None
        iterator = iter(loader)
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                raise ValueError(f"the training loader gives {i} batches per epoch; ask for at most "
                                 f"warmup + steps = {i} (now {warmup} + {steps})") from None
            trainer.state.iteration += 1
            trainer._iteration(trainer, batch)
            if i >= warmup:
                batches.append(batch)
        _sync(device)
        assert start is not None
        pipeline_s = time.perf_counter() - start
        del iterator
        patches = sum(batch_patches(b) for b in batches)

        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            trainer.state.iteration += 1
            trainer._iteration(trainer, batch)
        _sync(device)
        model_s = time.perf_counter() - start
    precision = getattr(trainer, "precision", None)
    out = {
        "config_files": [str(Path(f)) for f in config_files], "overrides": {k: str(v) for k, v in overrides.items()},
        "device": str(device), "torch_threads": torch.get_num_threads(),
        "workers": getattr(loader, "num_workers", 0), "precision": precision.as_dict() if precision else None,
        "steps": steps, "patches": patches, "patches_per_step": patches / max(1, steps),
        "pipeline_s": pipeline_s, "model_s": model_s,
        "pipeline_patches_s": patches / pipeline_s, "model_patches_s": patches / model_s,
        "ratio": model_s / pipeline_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out
