"""The training loader's dataset told which epoch starts, so items seeded per ``(seed, epoch, index)`` draw
that epoch's randomness whatever DataLoader worker reads them."""

from __future__ import annotations

from typing import Any

__all__ = ["start_dataset_epoch"]


def start_dataset_epoch(engine: Any) -> None:
    """``engine.data_loader.dataset.set_epoch(engine.state.epoch)`` where the dataset has ``set_epoch``.

    Attach at ``Events.EPOCH_STARTED``: Ignite creates the epoch's DataLoader iterator (and so its
    non-persistent workers, each with a copy of the dataset) after that event, so the workers see the epoch.
    """
    dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
    if dataset is not None and hasattr(dataset, "set_epoch"):
        dataset.set_epoch(engine.state.epoch)
