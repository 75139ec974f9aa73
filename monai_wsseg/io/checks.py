"""What every map writer shares: checks of its inputs, the class of each map cell, atomic output.

Every check raises ``ValueError`` whose message starts with ``where`` (the output path, or the function's
name) and names the problem, so a bad argument in a bundle config reads as one line. Internal to
:mod:`monai_wsseg.io`: the writers' public arguments are documented there.

The maps are :class:`~monai_wsseg.inference.engine.SlideMap` objects, only read through their attributes
(``probabilities`` ``(C, h, w)`` floating point, NaN = no data; ``downsample`` level-0 pixels per cell;
``mpp`` microns per cell), so this module imports neither torch nor MONAI.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monai_wsseg.io.palettes import Colour, default_colors

if TYPE_CHECKING:  # importing the engine pulls in torch and MONAI; the writers need neither
    from monai_wsseg.inference.engine import SlideMap

__all__ = [
    "SLAB_ROWS",
    "check_colors",
    "check_map",
    "check_names",
    "check_range",
    "check_threshold",
    "classify",
    "output_errors",
    "output_path",
]

#: Rows of the map converted at a time: bounds the float64/int temporaries for very large maps.
SLAB_ROWS = 1024


def output_path(path: str | os.PathLike, suffixes: Sequence[str] = ()) -> Path:
    """Check that ``path`` can be written (folder exists, is a folder, is writable; name has a suffix)."""
    try:
        path = Path(path)
    except TypeError:
        raise ValueError(f"output path must be a str or os.PathLike, got {type(path).__name__}") from None
    if suffixes and not any(path.name.lower().endswith(s) for s in suffixes):
        raise ValueError(f"{path}: the file name must end with {' or '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name")
    folder = path.parent
    if not folder.exists():
        raise ValueError(f"{path}: output folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{path}: output folder {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: output folder {folder} is not writable")
    return path


@contextlib.contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """Report a failed write of ``path`` as the writers do: ``ValueError`` when the folder refuses the file,
    else ``OSError`` naming ``path`` (not the temporary file the error came from)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ValueError(f"{path}: output folder {path.parent} is not writable ({exc.strerror})") from exc
        raise OSError(exc.errno, f"{path}: cannot write ({exc.strerror or exc})") from exc


def check_map(where: Any, smap: SlideMap) -> np.ndarray:
    """The ``(C, h, w)`` floating probabilities of ``smap`` after checking its fields."""
    probs = getattr(smap, "probabilities", None)
    if not isinstance(probs, np.ndarray) or probs.ndim != 3 or min(probs.shape) < 1:
        shape = getattr(probs, "shape", type(probs).__name__)
        raise ValueError(f"{where}: SlideMap.probabilities must be a non-empty (C, h, w) array, got {shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"{where}: SlideMap.probabilities must be floating point, got {probs.dtype}")
    d = getattr(smap, "downsample", None)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"{where}: SlideMap.downsample must be a positive integer, got {d!r}")
    mpp = getattr(smap, "mpp", None)
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float, np.floating)) or not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"{where}: SlideMap.mpp must be a positive number of microns per cell, got {mpp!r}")
    return probs


def check_range(where: Any, probs: np.ndarray) -> None:
    """Probabilities must lie in [0, 1] (NaN allowed): logits written as probabilities would be clipped silently."""
    finite = probs[np.isfinite(probs)] if probs.size <= 2**26 else None
    if finite is None:  # huge maps: slab by slab, without a full boolean copy
        lo, hi = math.inf, -math.inf
        for r0 in range(0, probs.shape[1], SLAB_ROWS):
            slab = probs[:, r0 : r0 + SLAB_ROWS]
            if np.isfinite(slab).any():
                lo, hi = min(lo, float(np.nanmin(slab))), max(hi, float(np.nanmax(slab)))
    elif finite.size:
        lo, hi = float(finite.min()), float(finite.max())
    else:
        return
    if lo < -1e-4 or hi > 1 + 1e-4 or np.isinf(probs).any():
        raise ValueError(
            f"{where}: probabilities must lie in [0, 1] (NaN for no data), found values in [{lo:.4g}, {hi:.4g}]; "
            "was the inferer's activation 'none'?"
        )


def check_threshold(where: Any, threshold: float | None) -> float | None:
    """``threshold`` as a float in [0, 1], or ``None``."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) or not 0 <= threshold <= 1:
        raise ValueError(f"{where}: threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def check_names(where: Any, class_names: Sequence[str], channels: int) -> list[str]:
    """One unique, non-empty class name per map channel."""
    # ValueError, not TypeError: the writers report every bad argument as ValueError (their documented contract)
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"{where}: class_names must be a sequence of strings, got {class_names!r}")
    names = list(class_names)
    if len(names) != channels:
        raise ValueError(f"{where}: {len(names)} class names given for a map with {channels} channel(s)")
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{where}: class names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: class names must be unique, got {names!r}")
    return names


def check_colors(where: Any, colors: Sequence[Sequence[int]] | None, n: int) -> list[Colour]:
    """``n`` ``(r, g, b)`` integer colours in 0..255; ``None`` gives :func:`~monai_wsseg.io.palettes.default_colors`."""
    if colors is None:
        return default_colors(n)
    colors = list(colors)
    if len(colors) != n:
        raise ValueError(f"{where}: {len(colors)} colours given for {n} class(es)")
    out = []
    for c in colors:
        try:
            rgb = tuple(int(v) for v in c)
            ok = len(rgb) == 3 and all(0 <= v <= 255 and v == float(x) for v, x in zip(rgb, c, strict=True))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{where}: colours must be (r, g, b) integers in 0..255, got {c!r}")
        out.append((rgb[0], rgb[1], rgb[2]))
    return out


def classify(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """``(h, w)`` int16 class index per cell: ``-2`` no data, ``-1`` below the threshold, else the class.

    One channel: class 0 where ``p >= threshold`` (0.5 when ``None``). Several channels: the argmax class;
    with a threshold, only where that class's probability reaches it. A cell with a NaN in any channel is
    no data. Computed slab by slab so temporaries stay small for huge maps.
    """
    c, h, w = probs.shape
    out = np.empty((h, w), dtype=np.int16)
    for r0 in range(0, h, SLAB_ROWS):
        slab = probs[:, r0 : r0 + SLAB_ROWS]
        nodata = np.isnan(slab).any(axis=0)
        if c == 1:
            t = 0.5 if threshold is None else threshold
            cls = np.where(slab[0] >= t, 0, -1).astype(np.int16)
        else:
            filled = np.where(np.isnan(slab), -np.inf, slab)
            cls = np.argmax(filled, axis=0).astype(np.int16)
            if threshold is not None:
                cls[np.max(filled, axis=0) < threshold] = -1
        cls[nodata] = -2
        out[r0 : r0 + SLAB_ROWS] = cls
    return out
