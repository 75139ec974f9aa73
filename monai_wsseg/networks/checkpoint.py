"""Load trained weights into a network from the checkpoint files the bundles write.

Every checkpoint is read with ``torch.load(..., weights_only=True)``: a file is data (tensors, numbers,
strings, containers), never code. A file whose pickle names anything else (a class, a function such as
``os.system``) is refused with :class:`CheckpointError` before any of it runs.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointError", "load_checkpoint", "load_weights", "read_state_dict", "state_dict_of"]


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, truncated, or holding pickled code; the message names the file."""


def load_checkpoint(path: str | os.PathLike, *, what: str = "a checkpoint",
                    map_location: str | torch.device = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with one clear error per way a file can be unusable.

    Args:
        path: the file.
        what: the file's kind, for the messages ("<path>: cannot be read as <what>: ...").
        map_location: where tensors are loaded.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is empty, truncated or not a torch file, or its pickle refers to code
            (the message says so and names the first such object).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL\s+([\w.]+)", text)  # torch names the first object it refused to import
        if found:
            raise CheckpointError(
                f"{path}: refused: the file holds pickled Python objects ({found.group(1)}) beyond plain weights; "
                "a weights-only load does not run them because they can execute code. Use checkpoints from trusted "
                "sources only, or re-save the weights as a plain state_dict"
            ) from None
        # Anything else the weights-only unpickler trips on is a damaged or foreign file, not code.
        detail = re.search(r"Unsupported operand \d+", text)
        raise CheckpointError(f"{path}: cannot be read as {what}: not a torch checkpoint "
                              f"({detail.group(0) if detail else 'corrupt pickle'})") from None
    except Exception as exc:  # zip, EOF and torch errors all mean "not a usable checkpoint"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # torch's zip errors go on for sentences of advice; the first says what is wrong
        raise CheckpointError(f"{path}: cannot be read as {what} (truncated or damaged?): "
                              f"{first.split('. ')[0]}") from None

_KEYS = ("model", "network", "state_dict", "net")


def state_dict_of(checkpoint: object, path: str | os.PathLike = "checkpoint", key: str | None = None) -> dict:
    """The network weights inside a loaded checkpoint.

    Accepts what the bundles' ``CheckpointSaver`` writes (a bare ``state_dict`` when it saves the model
    alone, ``{"model": ..., "optimizer": ..., "trainer": ...}`` otherwise) and the usual
    ``{"network" | "state_dict" | "net": ...}`` wrappers; a ``module.`` prefix left by
    ``DistributedDataParallel`` is removed.
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, expected a dict of weights)")
    state: dict = checkpoint
    keys = (key,) if key else _KEYS
    for k in keys:
        if isinstance(state.get(k), dict):
            state = state[k]
            break
    else:
        if key:
            raise ValueError(f"{path}: no '{key}' in the checkpoint (keys: {', '.join(map(str, state))})")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no network weights found (keys: {', '.join(map(str, list(state)[:6]))})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike, *, key: str | None = None, missing: str = "checkpoint",
                    unreadable: str = "a checkpoint", map_location: str | torch.device = "cpu") -> dict:
    """The weights in a local file (``torch.load(weights_only=True)``, unwrapped by :func:`state_dict_of`).

    ``missing`` and ``unreadable`` name the file's kind in the errors ("<path>: <missing> not found",
    "<path>: cannot be read as <unreadable>: ...").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {missing} not found")
    checkpoint = load_checkpoint(path, what=unreadable, map_location=map_location)
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
