"""Write files atomically: a reader sees the previous file or the complete new one, never half of one.

Every output of the project that a rerun may skip because it exists (maps, masks, tables, reports) goes
through :func:`write_atomically`: the content is written to a hidden temporary file in the target's own
folder (the same file system, so the final rename is atomic), then ``os.replace``-d over the target. On
any failure, ``KeyboardInterrupt`` included, the temporary file is removed and an existing target is left
as it was. Only a hard kill (SIGKILL, power loss) can leave a temporary file; its name starts with a dot
and does not end with the target's suffix, so ``*.png``-style globs and listings of outputs skip it.

No ``fsync``: the project's outputs can be recomputed, and no caller has needed durability across a
power loss, only that a crash never leaves a truncated file under the final name.

Standard library only: cheap to import.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["temporary_path", "write_atomically", "write_text_atomically"]


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary name :func:`write_atomically` uses for ``path``: ``.<name>.tmp-<pid>-<6 hex>``.

    In ``path``'s folder; the process id and a random part keep concurrent writers (processes, threads,
    two calls of one process) from ever sharing a temporary file.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")


def write_atomically(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    Args:
        path: the target file; its folder must exist (it is not created, so a mistyped folder is an error,
            not a new folder).
        write: writes the complete content to the path it is given (which ends in ``.tmp-...``, not in
            ``path``'s suffix: pass the format explicitly to writers that guess it from the name).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        FileNotFoundError: ``path``'s folder does not exist (nothing is written).
        NotADirectoryError: ``path``'s "folder" is a file.
        BaseException: whatever ``write`` or the rename raised, after the temporary file was removed;
            an existing ``path`` is then unchanged.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        if folder.exists():
            raise NotADirectoryError(f"{path}: cannot write it, {folder} is not a folder")
        raise FileNotFoundError(f"{path}: cannot write it, the folder {folder} does not exist")
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        # an unlink that fails too (the folder went read-only meanwhile) must not hide the original error
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    r"""Write ``text`` to ``path`` atomically (see :func:`write_atomically`). Returns ``path``.

    Line endings are written as given (no ``\n`` translation), so CSV text made by :mod:`csv` keeps its
    own terminators.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding=encoding, newline="") as f:
            f.write(text)

    return write_atomically(path, write)
