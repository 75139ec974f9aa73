"""The loss of a training step, the one reader of it: the ``output_transform`` of the train configs' stats,
TensorBoard and MLflow handlers (``MLFlowHandler`` is switched on by ``use_mlflow``) for every trainer."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["step_loss"]


def step_loss(output: Any) -> float | None:
    """The loss of a training step, whatever shape the trainer gives its output.

    Trainers that decollate give a list of per-sample dicts (each holding the batch loss); those that do
    not (the MIL trainer, the WSSS segmenter) give one dict. ``None`` when the step has no loss (every
    slide of a MIL step unreadable): trackers then log nothing for it, rather than a false 0.
    """
    if isinstance(output, (list, tuple)):
        output = output[0] if output else None
    loss = output.get("loss") if isinstance(output, dict) else None
    if isinstance(loss, torch.Tensor):
        return float(loss.detach().float().mean())
    return None if loss is None else float(loss)
