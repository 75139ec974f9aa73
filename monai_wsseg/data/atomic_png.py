"""Write a PNG so that a crash never leaves a truncated file under its final name."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from PIL import Image

__all__ = ["save_png"]


def save_png(path: str | os.PathLike, image: Image.Image, compress_level: int = 3) -> Path:
    """Save ``image`` to a hidden temporary name in ``path``'s folder (created), then rename it.

    Reruns that skip existing outputs can then trust that an existing file is complete. The
    temporary name is unique per call, so concurrent writers never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        image.save(tmp, format="PNG", compress_level=compress_level)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
