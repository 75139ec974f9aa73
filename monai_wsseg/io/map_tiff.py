"""Slide maps as pyramidal tiled TIFFs that OpenSlide, tiffslide, cuCIM and QuPath lay over their slide."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from monai_wsseg.io import checks
from monai_wsseg.utils.atomic import write_atomically

if TYPE_CHECKING:  # importing the engine pulls in torch and MONAI; the writers need neither
    from monai_wsseg.inference.engine import SlideMap

__all__ = ["NO_DATA_LABEL", "write_map_tiff"]

#: Value of no-data cells in a label-map TIFF (class indices are 0..C-1, so at most 255 classes).
NO_DATA_LABEL = 255


def write_map_tiff(
    path: str | os.PathLike,
    smap: SlideMap,
    *,
    channel: int | None = None,
    label_map: bool = False,
    threshold: float = 0.5,
    tile_size: int = 256,
    slide_mpp: float | None = None,
) -> Path:
    """Write a map as a pyramidal tiled TIFF that overlays its slide in OpenSlide/tiffslide/QuPath.

    Level 0 is ``(h, w)`` uint8, one pixel per map cell; its resolution tag is the slide's mpp × downsample
    microns per pixel, so viewers scale it onto the slide (both share the top-left corner; the map's last
    row/column may reach up to one cell past the slide's edge). Compression is zlib (lossless);
    reduced levels are 2× area averages (probabilities) or 2× nearest samples (labels).

    Args:
        path: output ``.tif``/``.tiff`` file; its folder must exist.
        smap: the map (``probabilities`` ``(C, h, w)`` in [0, 1], NaN = no data).
        channel: channel to write as a probability image; required when ``C > 1`` (unless ``label_map``).
        label_map: write class indices instead: the argmax over channels (``0..C-1``) when ``C > 1``;
            for one channel ``1`` where ``p >= threshold`` and ``0`` elsewhere. No-data cells are
            :data:`NO_DATA_LABEL` (255).
        threshold: the cut of a single-channel label map.
        tile_size: TIFF tile edge in pixels (multiple of 16).
        slide_mpp: level-0 microns per pixel of the slide; the tag is then ``slide_mpp × smap.downsample``.
            ``None`` uses ``smap.mpp``, which the inferer sets to exactly that.

    Returns:
        ``path``. Probability mode stores ``round(p × 255)``, no data as 0.

    Raises:
        ValueError: a bad map/argument, probabilities outside [0, 1], or an unwritable folder.
    """
    # here, not at module level: tifffile and its codecs load only when a TIFF is written
    from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff

    path = checks.output_path(path, (".tif", ".tiff"))
    probs = checks.check_map(path, smap)
    c, h, w = probs.shape
    if slide_mpp is None:
        map_mpp = float(smap.mpp)
    elif isinstance(slide_mpp, (int, float, np.floating)) and math.isfinite(slide_mpp) and slide_mpp > 0:
        map_mpp = float(slide_mpp) * int(smap.downsample)
    else:
        raise ValueError(f"{path}: slide_mpp must be a positive number of microns per pixel, got {slide_mpp!r}")
    if label_map:
        if channel is not None:
            raise ValueError(f"{path}: channel and label_map=True exclude each other")
        if c > NO_DATA_LABEL:
            raise ValueError(f"{path}: a label map holds at most {NO_DATA_LABEL} classes, the map has {c}")
        thr = checks.check_threshold(path, threshold)
        cls = checks.classify(probs, thr if c == 1 else None)
        image = np.empty((h, w), dtype=np.uint8)
        for r0 in range(0, h, checks.SLAB_ROWS):
            slab = cls[r0 : r0 + checks.SLAB_ROWS]
            # one channel: class 0 ("positive") → 1, below threshold → 0; several: the class index itself
            labels = slab + 1 if c == 1 else slab
            image[r0 : r0 + checks.SLAB_ROWS] = np.where(slab == -2, NO_DATA_LABEL, labels).astype(np.uint8)
        resample = "nearest"
    else:
        if channel is None:
            if c != 1:
                raise ValueError(f"{path}: the map has {c} channels; pass channel=<index> or label_map=True")
            channel = 0
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < c:
            raise ValueError(f"{path}: channel must be an integer in 0..{c - 1}, got {channel!r}")
        plane = probs[channel]
        checks.check_range(path, plane[None])
        image = np.empty((h, w), dtype=np.uint8)
        for r0 in range(0, h, checks.SLAB_ROWS):
            # float64 so the stored value is exactly round(p × 255) of the float32 probability
            slab = np.nan_to_num(plane[r0 : r0 + checks.SLAB_ROWS].astype(np.float64), nan=0.0)
            image[r0 : r0 + checks.SLAB_ROWS] = np.rint(np.clip(slab, 0.0, 1.0) * 255.0)
        resample = "area"

    def write(tmp: Path) -> None:
        write_pyramidal_tiff(
            tmp, image, map_mpp, tile_size=tile_size, compression="zlib", photometric="minisblack",
            resample=resample,
        )

    with checks.output_errors(path):
        return write_atomically(path, write)
