"""Randomness drawn per item, so a training item's augmentation does not depend on the DataLoader worker
that reads it (MONAI seeds each worker's transforms from the worker's own seed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["seed_transform"]


def seed_transform(transform: Any, key: Sequence[int]) -> None:
    """Re-seed ``transform`` (MONAI ``Randomizable`` or ``Compose``: its ``set_random_state``) from ``key``,
    e.g. ``(seed, epoch, index)``; a transform without ``set_random_state`` (or ``None``) is left alone."""
    set_random_state = getattr(transform, "set_random_state", None)
    if set_random_state is not None:
        set_random_state(seed=int(np.random.default_rng(list(key)).integers(2**31)))
