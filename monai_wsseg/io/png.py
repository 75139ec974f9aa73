"""Write a PNG so that a crash never leaves a truncated file under its final name."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from monai_wsseg.utils.atomic import write_atomically

__all__ = ["save_png"]


def save_png(path: str | os.PathLike, image: Image.Image, compress_level: int = 3) -> Path:
    """Save ``image`` as PNG to ``path`` atomically (:func:`~monai_wsseg.utils.atomic.write_atomically`);
    ``path``'s folder is created.

    Reruns that skip existing outputs can then trust that an existing file is complete. The
    temporary name is unique per call, so concurrent writers never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda tmp: image.save(tmp, format="PNG", compress_level=compress_level))
