"""Check an output folder before any work is done, so a full or read-only disk is reported in the first
second of a run, not after hours of training or inference.

Cheap to import (standard library only): trainers, the cohort runner and the evaluation all call
:func:`check_output_dir` first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["DEFAULT_MIN_FREE_MB", "OutputDirError", "check_output_dir"]

#: Free space (MiB) an output folder needs by default: a few maps or checkpoints of the tiny and CPU
#: profiles. Callers that write more (ResNet50 checkpoints, large maps) pass a larger figure.
DEFAULT_MIN_FREE_MB = 64.0


class OutputDirError(ValueError):
    """An output folder cannot take the run's outputs; the message starts with the folder."""


def check_output_dir(output_dir: str | os.PathLike, *, min_free_mb: float = DEFAULT_MIN_FREE_MB) -> Path:
    """Create ``output_dir`` and prove it takes a file and has ``min_free_mb`` MiB free.

    Args:
        output_dir: the folder (created with its parents when missing).
        min_free_mb: free space, in MiB, the folder's file system must offer.

    Returns:
        The folder as a ``Path``.

    Raises:
        OutputDirError: the folder cannot be created or written, or holds less free space than asked.
    """
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A real file, not os.access: root ignores permission bits but not read-only mounts, and
        # os.access says nothing about a full disk.
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputDirError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None
    free_mb = shutil.disk_usage(out).free / 2**20
    if free_mb < min_free_mb:
        raise OutputDirError(
            f"{out}: output folder is nearly full ({free_mb:.1f} MiB free, the run needs at least "
            f"{min_free_mb:g} MiB); free space or choose another output_dir"
        )
    return out
