"""WSSS inference (paper B): a folder of patches or whole slides, gated by the classifier.

``inference.json`` wires the components; the choice between its two pipelines is made here, by
:func:`run_inference` (its ``run``) and :func:`inference_dataset` (its ``dataset``), from one setting,
``slides_dir``:

* ``slides_dir`` null — every ``input_dir/*.png`` patch gets a palette-PNG label mask
  (:func:`predict_patch_folder`);
* ``slides_dir`` given (a slide, a folder of slides or a manifest) — the bundle's ``evaluator``, a
  :class:`~monai_wsseg.inference.evaluator.CohortEvaluator` over the
  :class:`~monai_wsseg.wsss.gate.GatedSegmenter` (≥ 50 % overlap, mean stitching of the gated
  probabilities), writes a label-map TIFF, an overlay and GeoJSON per slide.
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

from monai_wsseg.inference.cohort import CohortResult
from monai_wsseg.inference.evaluator import CohortEvaluator, patch_dataset, slide_dataset
from monai_wsseg.io.palettes import write_palette_mask
from monai_wsseg.wsss.patches import read_rgb, white_background

__all__ = ["inference_dataset", "predict_patch_folder", "run_inference"]

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


def inference_dataset(input_dir: str | os.PathLike, slides_dir: str | os.PathLike | None = None):
    """The ``dataset`` of ``inference.json``: one ``{"image": path}`` item per slide of ``slides_dir`` when it
    is given, per ``input_dir/*.png`` patch otherwise (the files :func:`run_inference` will segment)."""
    return slide_dataset(slides_dir) if slides_dir is not None else patch_dataset(input_dir)


def run_inference(evaluator: CohortEvaluator, gated: nn.Module, *, input_dir: str | os.PathLike,
                  output_dir: str | os.PathLike, slides_dir: str | os.PathLike | None = None,
                  mean: Sequence[float], std: Sequence[float], palette: Sequence,
                  background_index: int | None = None, device: str | torch.device = "cpu",
                  progress: bool = True) -> CohortResult | dict[str, int]:
    """The ``run`` of ``inference.json``: whole slides through ``evaluator`` when ``slides_dir`` is given,
    the patches of ``input_dir`` through ``gated`` otherwise.

    Args:
        evaluator: the bundle's ``evaluator``, built over :func:`inference_dataset` ``(input_dir, slides_dir)``;
            run only for slides (it writes to its own ``output_dir``).
        gated: ``(B,3,H,W)`` → gated class probabilities, for the patches.
        output_dir: where the patch masks go. mean, std, palette, background_index, device, progress:
            see :func:`predict_patch_folder`.

    Returns the evaluator's :class:`~monai_wsseg.inference.cohort.CohortResult` for slides, the counts of
    :func:`predict_patch_folder` for patches.
    """
    if slides_dir is not None:
        return evaluator.run()
    return predict_patch_folder(gated, input_dir, output_dir, mean=mean, std=std, palette=palette,
                                background_index=background_index, device=device, progress=progress)
