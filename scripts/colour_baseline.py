#!/usr/bin/env python
"""Pixel AUC of colour-only tumor scores on a cohort's masked slides: the bar a weakly supervised model must clear.

Each score is computed per map cell from the mean colour of the cell (``--cell`` px at ``--mpp`` µm/px,
the same grid as the MIL bundle's maps): darkness (255 − grey), hematoxylin optical density (colour
deconvolution), saturation and its opposite, and the inverse of each. The best of them is what a colour
threshold can do. Figures are pooled over the tissue cells of the chosen split, as in ``evaluate.json``.

    python scripts/colour_baseline.py --dataset_dir demo/cohort --split test [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from monai_wsseg.datasets.discovery import find_manifest_or_slides
from monai_wsseg.metrics.tumor_maps import TUMOR_FRACTION, TumorMapAccumulator, load_mask, mask_on_grid
from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.wsi.slide import open_slide
from monai_wsseg.wsi.tissue import compute_tissue_mask, tissue_on_grid

# Hematoxylin optical-density direction of the Ruifrok–Johnston stain matrix.
_HEMATOXYLIN = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])


def colour_scores(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Colour features of ``(h, w, 3)`` uint8 mean cell colours, each scaled to [0, 1] (higher = more tumor-like)."""
    x = rgb.astype(np.float64)
    grey = x.mean(-1)
    od = -np.log10(np.clip(x, 1, 255) / 255.0)
    sat = (x.max(-1) - x.min(-1)) / np.maximum(x.max(-1), 1)
    feats = {"darkness": (255 - grey) / 255, "hematoxylin": np.clip(od @ _HEMATOXYLIN / 2.5, 0, 1), "saturation": sat}
    return {**feats, **{f"1-{k}": 1 - v for k, v in feats.items()}}


def main(argv: list[str] | None = None) -> dict:
    """Score the colour baselines on ``--split`` (``argv``: options, default ``sys.argv[1:]``); returns the summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--mpp", type=float, default=2.0, help="input µm/px of the model being compared")
    ap.add_argument("--cell", type=int, default=16, help="input px per map cell (the network's output stride)")
    ap.add_argument("--tissue_mpp", type=float, default=8.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    records = [r for r in find_manifest_or_slides(args.dataset_dir) if r.split == args.split]
    accs: dict[str, TumorMapAccumulator] = {}
    used = 0
    for rec in records:
        if rec.mask is None and rec.label != 0:
            continue
        with open_slide(rec.slide) as slide:
            cell_mpp = args.mpp * args.cell
            downsample = round(cell_mpp / slide.mpp)
            w, h = (-(-d // downsample) for d in slide.dimensions)
            rgb = slide.read_region((0, 0), (w, h), mpp=slide.mpp * downsample)  # one pixel per map cell
            tissue = tissue_on_grid(compute_tissue_mask(slide, mpp=args.tissue_mpp), downsample, (h, w))
            if rec.mask is not None:
                mask, mask_ds = load_mask(rec.mask, slide.dimensions)
                truth = mask_on_grid(mask, mask_ds, downsample, (h, w)) >= TUMOR_FRACTION
            else:
                truth = np.zeros((h, w), bool)
        for name, score in colour_scores(rgb).items():
            accs.setdefault(name, TumorMapAccumulator()).update(score, truth, tissue)
        used += 1
    result = {name: acc.auc_without_background() for name, acc in accs.items()}
    best = max(result, key=lambda k: -1 if np.isnan(result[k]) else result[k]) if result else None
    summary = {"split": args.split, "slides": used, "auc_tissue": result, "best": best,
               "best_auc": result.get(best) if best else None}
    for name, auc in sorted(result.items(), key=lambda kv: -kv[1]):
        print(f"{name:<14} pixel AUC (tissue) {auc:.3f}")
    print(f"best colour score on {used} '{args.split}' slides: {best} {summary['best_auc']:.3f}")
    if args.json:
        write_text_atomically(args.json, json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
