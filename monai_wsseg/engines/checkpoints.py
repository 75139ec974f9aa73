"""Checkpoint saving and resuming that survive ``kill -9``, and refuse checkpoints holding code.

MONAI's ``CheckpointSaver`` (monai 1.6) writes with Ignite's ``DiskSaver(atomic=False)``, and Ignite's
``Checkpoint`` deletes the previous file *before* it writes the next one. A job killed while
``torch.save`` runs is then left with a truncated ``checkpoint_epoch=N.pt`` under its final name (which
the next run picks up to resume from, and fails on) and without the previous checkpoint.
:class:`AtomicCheckpointSaver` saves to a temporary file in the same folder and renames it (Ignite's
atomic mode, which also keeps the file readable by group and others, MONAI's reason for turning it
off), and deletes a superseded file only once its successor is complete. :class:`ResumeCheckpointLoader`
reads the file through :func:`~monai_wsseg.networks.checkpoint.load_checkpoint` first, so a damaged
or untrusted checkpoint stops the run with one clear message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointLoader, CheckpointSaver
from typing_extensions import override

from monai_wsseg.networks.checkpoint import load_checkpoint

__all__ = ["AtomicCheckpointSaver", "ResumeCheckpointLoader", "latest_checkpoint"]


class _RemoveAfterSave(BaseSaveHandler):
    """Wraps a disk saver so that the files Ignite asks to remove go only after the next save completed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._pending: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        self.inner(checkpoint, filename, metadata)
        pending, self._pending = self._pending, []
        for old in pending:
            if old != filename:
                self.inner.remove(old)

    def remove(self, filename: str) -> None:
        # A saver with a fixed file name (MONAI's "model.pt") replaces that file in place: nothing to remove.
        if getattr(self.inner, "filename", None) is None:
            self._pending.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` whose files are written atomically and replaced only by complete
    successors (same arguments)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                # DiskSaver's own switch: temporary file + os.replace (+ group/other read permission).
                checkpoint.save_handler._atomic = True
                # Ignite types the attribute from its DiskSaver branch; any BaseSaveHandler is valid there.
                checkpoint.save_handler = _RemoveAfterSave(checkpoint.save_handler)  # type: ignore[assignment]


class ResumeCheckpointLoader(CheckpointLoader):
    """``monai.handlers.CheckpointLoader`` that names the file and the problem when it cannot be used.

    Same arguments. The file is read with ``weights_only=True`` (as MONAI does); an empty, truncated or
    code-holding file raises :class:`~monai_wsseg.networks.checkpoint.CheckpointError` instead of a
    traceback from inside ``torch.load``.
    """

    @override
    def __call__(self, engine: Engine) -> None:
        load_checkpoint(self.load_path, what="a training checkpoint to resume from", map_location="cpu")
        super().__call__(engine)
        self.logger.info("resumed from %s at epoch %d, iteration %d", self.load_path, engine.state.epoch,
                         engine.state.iteration)


def latest_checkpoint(directory: str | Path, prefix: str = "checkpoint") -> str | None:
    """The newest ``<prefix>*.pt`` in ``directory`` (for resuming), or ``None``."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    def order(p: Path) -> tuple:
        # "checkpoint_epoch=12.pt": the epoch number decides; file times can tie within a second
        numbers = [int(n) for n in re.findall(r"=(\d+)", p.name)]
        return (numbers, p.stat().st_mtime_ns)

    found = sorted(directory.glob(f"{prefix}*.pt"), key=order)
    return str(found[-1]) if found else None
