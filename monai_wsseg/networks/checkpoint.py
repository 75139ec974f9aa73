"""Load trained weights into a network from the checkpoint files the bundles write."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_weights", "read_state_dict", "state_dict_of"]

_KEYS = ("model", "network", "state_dict", "net")


def state_dict_of(checkpoint: dict, path: str | os.PathLike = "checkpoint", key: str | None = None) -> dict:
    """The network weights inside a loaded checkpoint.

    Accepts what the bundles' ``CheckpointSaver`` writes (a bare ``state_dict`` when it saves the model
    alone, ``{"model": ..., "optimizer": ..., "trainer": ...}`` otherwise) and the usual
    ``{"network" | "state_dict" | "net": ...}`` wrappers; a ``module.`` prefix left by
    ``DistributedDataParallel`` is removed.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, expected a dict of weights)")
    keys = (key,) if key else _KEYS
    for k in keys:
        if isinstance(checkpoint.get(k), dict):
            checkpoint = checkpoint[k]
            break
    else:
        if key:
            raise ValueError(f"{path}: no '{key}' in the checkpoint (keys: {', '.join(map(str, checkpoint))})")
    if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path}: no network weights found (keys: {', '.join(map(str, list(checkpoint)[:6]))})")
    if checkpoint and all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return checkpoint


def read_state_dict(path: str | os.PathLike, *, key: str | None = None, missing: str = "checkpoint",
                    unreadable: str = "a checkpoint", map_location: str | torch.device = "cpu") -> dict:
    """The weights in a local file (``torch.load(weights_only=True)``, unwrapped by :func:`state_dict_of`).

    ``missing`` and ``unreadable`` name the file's kind in the errors ("<path>: <missing> not found",
    "<path>: cannot be read as <unreadable>: ...").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing} not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors all mean "not a checkpoint"
        raise ValueError(f"{path}: cannot be read as {unreadable}: {str(exc).splitlines()[0]}") from exc
    return state_dict_of(checkpoint, path, key)


def load_weights(network: nn.Module, path: str | os.PathLike, *, key: str | None = None, strict: bool = True,
                 map_location: str | torch.device = "cpu") -> nn.Module:
    """Load the weights at ``path`` into ``network`` (``torch.load(weights_only=True)``) and return it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a checkpoint, or its weights do not fit the network (the message
            names the file and the first mismatching keys: usually another backbone or class count).
    """
    weights = read_state_dict(path, key=key, map_location=map_location)
    target = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
    try:
        target.load_state_dict(weights, strict=strict)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{path}: weights do not fit {type(target).__name__}: {detail}") from exc
    return network
