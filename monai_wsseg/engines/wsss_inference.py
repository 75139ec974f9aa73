"""WSSS inference on a folder of patches: one palette-PNG label mask per patch, gated by the classifier.

Whole slides go through the WSI inference engine instead (``inference.json`` builds a
:class:`~monai_wsseg.networks.gate.GatedSegmenter` and runs :func:`~monai_wsseg.inference.cohort.run_cohort`
with label maps, ≥ 50 % overlap and mean stitching of the gated probabilities).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from monai_wsseg.data.patches import read_rgb, white_background
from monai_wsseg.io.palettes import write_palette_mask

__all__ = ["predict_patch_folder"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_patch_folder(gated: nn.Module, input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                         mean: Sequence[float], std: Sequence[float], palette: Sequence,
                         background_index: int | None = None, device: str | torch.device = "cpu",
                         progress: bool = True) -> dict[str, int]:
    """Write ``output_dir/<name>.png`` (palette indices = classes) for every ``input_dir/*.png``.

    Args:
        gated: ``(B,3,H,W)`` normalised images → ``(B,C,H,W)`` gated class probabilities.
        mean, std: per-channel standardisation in [0, 1] units (as in training).
        palette: one ``(r, g, b)`` per class (and one for the background index when given).
        background_index: when given, white background (grey > 200) is written with this index.

    Existing masks are kept (a rerun finishes an interrupted folder); an unreadable patch is logged and
    counted, and does not stop the others. Returns ``{"written", "skipped", "failed"}``.
    """
    src, out = Path(input_dir), Path(output_dir)
    files = sorted(src.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"{src}: no .png patches to segment")
    out.mkdir(parents=True, exist_ok=True)
    gated = gated.to(device).eval()
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    counts = {"written": 0, "skipped": 0, "failed": 0}
    for path in tqdm(files, desc="segment patches", unit="patch", disable=not progress):
        target = out / path.name
        if target.exists():
            counts["skipped"] += 1
            continue
        try:
            rgb = read_rgb(path)
        except (OSError, ValueError) as exc:
            logger.warning("%s: skipped: %s", path, str(exc).splitlines()[0])
            counts["failed"] += 1
            continue
        x = ((torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255 - m) / s)[None]
        labels = gated(x.to(device))[0].argmax(0).cpu().numpy().astype(np.uint8)
        if background_index is not None:
            labels[white_background(rgb)] = background_index
        write_palette_mask(target, labels, palette)
        counts["written"] += 1
    return counts
