"""The per-slide report written beside a slide's maps: what could not be computed, and why.

A probability TIFF stores ``round(p × 255)`` and cannot tell a no-data cell from a probability of 0, so
``<stem>.json`` records, for every slide of a cohort run, the regions whose tiles could not be read
(corrupted JPEG tiles, I/O errors) and whether the slide held any tissue. Readers of stored maps (the
evaluation) use it to keep those cells out of the figures; a user reads it to see which parts of a
slide the maps do not cover. It is written last, atomically, so its presence also marks the slide's
outputs as complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monai_wsseg.utils.atomic import write_text_atomically

if TYPE_CHECKING:  # the engine pulls in torch and MONAI; reading a report needs neither
    from monai_wsseg.inference.engine import SlideMap

__all__ = ["REPORT_SUFFIX", "read_slide_report", "slide_report", "unread_cells", "write_slide_report"]

REPORT_SUFFIX = ".json"


def slide_report(smap: SlideMap, slide_dimensions: tuple[int, int], precision: str | None = None) -> dict[str, Any]:
    """The report of one slide's map.

    Keys: ``slide``; ``dimensions`` (level-0 width, height); ``downsample`` (level-0 pixels per map cell);
    ``map_mpp`` (microns per map cell); ``computed_cells`` / ``nodata_cells`` (counts of map cells);
    ``no_tissue`` (nothing was inferred); ``unread_regions`` (level-0 ``[x, y, width, height]`` whose
    tiles could not be read, no-data in every map); ``unread_windows`` (their count); ``precision`` (the
    network's numeric precision, ``fp32`` / ``bf16`` / ``fp16``, when given).
    """
    computed = int(np.count_nonzero(smap.computed))
    total = int(np.prod(smap.probabilities.shape[1:]))
    return {
        "slide": str(smap.slide),
        "dimensions": [int(v) for v in slide_dimensions],
        "downsample": int(smap.downsample),
        "map_mpp": float(smap.mpp),
        "computed_cells": computed,
        "nodata_cells": total - computed,
        "no_tissue": computed == 0 and not smap.unread,
        "unread_windows": len(smap.unread),
        "unread_regions": [[int(v) for v in box] for box in smap.unread_tiles],
    } | ({"precision": precision} if precision else {})


def write_slide_report(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write ``report`` as JSON to ``path`` atomically (:func:`~monai_wsseg.utils.atomic.write_atomically`)."""
    return write_text_atomically(path, json.dumps(report, indent=1) + "\n")


def read_slide_report(path: str | os.PathLike) -> dict[str, Any]:
    """A report written by :func:`write_slide_report`.

    Raises:
        ValueError: the file is not such a report (the message names it).
    """
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable slide report ({type(exc).__name__}: {exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("unread_regions"), list):
        raise ValueError(f"{path}: not a slide report (no 'unread_regions' list)")
    return report


def unread_cells(report: dict[str, Any], downsample: int, shape: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` bool: map cells (``downsample`` level-0 pixels each) inside the report's unread regions."""
    h, w = shape
    cells = np.zeros((h, w), dtype=bool)
    d = int(downsample)
    for x, y, bw, bh in report["unread_regions"]:
        cells[max(0, y // d) : max(0, -(-(y + bh) // d)), max(0, x // d) : max(0, -(-(x + bw) // d))] = True
    return cells
