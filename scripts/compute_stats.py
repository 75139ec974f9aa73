#!/usr/bin/env python
"""Per-channel mean and std of the training patches, in [0, 1] units, for BagStandardize.

    python scripts/compute_stats.py --dataset_dir demo/cohort
    python scripts/compute_stats.py --dataset_dir /data/tcga --bags-per-slide 4 --json stats.json

Draws the bags training would see (``SlideBagDataset`` with the same bag size, patch size, resolution
and seed; epochs 0 .. bags-per-slide − 1) from the slides of one split, and counts every patch pixel.
Counts are exact 256-bin histograms per channel, so the statistics are exact up to the final float64
arithmetic and memory does not grow with the number of bags. Prints a snippet to paste in a bundle
config, e.g. ``{"mean": [0.71, 0.55, 0.68], "std": [0.16, 0.19, 0.14]}``; ``--json`` writes the same keys
with provenance, so a config can also reference them as ``"%stats.json#mean"``.
Unreadable slides are skipped with a warning naming them.

``--stain_json PATH`` also fits the stain-normalisation references (Reinhard lαβ statistics and Macenko
stain vectors, :mod:`monai_wsseg.wsi.stain`) on the tissue pixels of the same bags, an even random share
of at most ``--stain_pixels`` of them per bag, and writes ``{"reinhard": ..., "macenko": ..., "source":
...}`` there atomically; an inference config then names it as
``stain_normalizer("macenko", "PATH")``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from monai_wsseg.datasets.discovery import find_manifest_or_slides
from monai_wsseg.mil.bags import SlideBagDataset
from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.utils.cli import write_json
from monai_wsseg.wsi.stain import TISSUE_OD, MacenkoNormalizer, ReinhardNormalizer, tissue_pixels


def keep_uint8(bag: torch.Tensor) -> torch.Tensor:
    """Dataset transform that keeps the raw ``(N, 3, P, P)`` uint8 bag (module level: picklable for workers)."""
    return bag


def channel_histograms(bag: torch.Tensor) -> np.ndarray:
    """``(3, 256)`` int64 pixel counts per channel of a ``(N, 3, P, P)`` uint8 bag."""
    per_channel = bag.permute(1, 0, 2, 3).reshape(3, -1).to(torch.int64)
    # One bincount over channel-offset values instead of three: one pass over the bag.
    offset = torch.arange(3, dtype=torch.int64).view(3, 1) * 256
    return torch.bincount((per_channel + offset).reshape(-1), minlength=3 * 256).view(3, 256).numpy()


def stats_from_histograms(hist: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std in [0, 1] units from ``(3, 256)`` counts."""
    values = np.arange(256, dtype=np.float64) / 255.0
    counts = hist.astype(np.float64)
    n = counts.sum(axis=1)
    mean = counts @ values / n
    # Centred second moment: no cancellation between E[x²] and E[x]² as with raw sums.
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    return mean.tolist(), np.sqrt(var).tolist()


def bag_tissue_pixels(bag: torch.Tensor, quota: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``quota`` random tissue pixels ``(M, 3)`` uint8 of a ``(N, 3, P, P)`` uint8 bag."""
    pixels = tissue_pixels(bag.permute(0, 2, 3, 1).numpy())
    if len(pixels) > quota:
        pixels = pixels[np.sort(rng.choice(len(pixels), quota, replace=False))]
    return pixels


def stain_references(pixels: np.ndarray, source: dict) -> dict:
    """The ``--stain_json`` payload: both references fitted on ``(M, 3)`` uint8 tissue pixels."""
    try:
        return {"reinhard": ReinhardNormalizer.fit(pixels), "macenko": MacenkoNormalizer.fit(pixels),
                "source": {**source, "tissue_pixels": len(pixels), "tissue_od_threshold": TISSUE_OD}}
    except ValueError as exc:
        raise SystemExit(f"cannot fit the stain references: {exc}") from None


def main(argv: list[str] | None = None) -> dict:
    """Compute, print and optionally save the statistics; returns the ``--json`` payload."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", "--dataset-dir", required=True, type=Path,
                    help="cohort folder (manifest.csv or TCGA-named slides) or a manifest CSV")
    ap.add_argument("--split", default="train", help="split whose slides are used (default: train)")
    ap.add_argument("--bags-per-slide", "--bags_per_slide", type=int, default=2,
                    help="bags drawn per slide, one per epoch 0..K-1 (default 2)")
    ap.add_argument("--bag_size", "--bag-size", type=int, default=150)
    ap.add_argument("--patch_size", "--patch-size", type=int, default=224)
    ap.add_argument("--mpp", type=float, default=0.5, help="patch resolution, µm/px (default 0.5)")
    ap.add_argument("--min_tissue", "--min-tissue", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0, help="seed of the patch draws and of the split assignment")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    ap.add_argument("--json", type=Path, help="also write the statistics here (atomically)")
    ap.add_argument("--stain_json", "--stain-json", type=Path,
                    help="also fit the Reinhard and Macenko stain references and write them here (atomically)")
    ap.add_argument("--stain_pixels", "--stain-pixels", type=int, default=2_000_000,
                    help="most tissue pixels the stain references are fitted on (default 2000000)")
    args = ap.parse_args(argv)
    if args.bags_per_slide < 1:
        ap.error("--bags-per-slide must be >= 1")
    if args.stain_pixels < 1000:
        ap.error("--stain_pixels must be >= 1000")

    records = find_manifest_or_slides(args.dataset_dir, seed=args.seed)
    chosen = [r for r in records if r.split == args.split]
    if not chosen:
        found = sorted({str(r.split) for r in records})
        raise SystemExit(f"{args.dataset_dir}: no slides in split {args.split!r} (splits present: {', '.join(found)})")
    ds = SlideBagDataset(chosen, bag_size=args.bag_size, patch_size=args.patch_size, mpp=args.mpp,
                         min_tissue=args.min_tissue, transform=keep_uint8, seed=args.seed)

    hist = np.zeros((3, 256), dtype=np.int64)
    # Stain pixels: an equal quota per bag keeps memory bounded and every slide represented; a fixed seed
    # and the in-order loop make the subset independent of --workers.
    stain_quota = -(-args.stain_pixels // (len(ds) * args.bags_per_slide))
    stain_rng = np.random.default_rng(args.seed)
    stain_parts: list[np.ndarray] = []
    bags = 0
    skipped: dict[str, str] = {}
    read: set[str] = set()
    with tqdm(total=len(ds) * args.bags_per_slide, desc="bags", unit="bag") as bar:
        for epoch in range(args.bags_per_slide):
            ds.set_epoch(epoch)
            # batch_size=None: items one by one, in order, so the sums do not depend on --workers.
            loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=args.workers)
            for item in loader:
                bar.update()
                if "error" in item:
                    if item["slide"] not in skipped:
                        skipped[item["slide"]] = item["error"]
                        tqdm.write(f"warning: skipping unreadable slide {item['slide']}: {item['error']}",
                                   file=sys.stderr)
                    continue
                hist += channel_histograms(item["image"])
                if args.stain_json:
                    stain_parts.append(bag_tissue_pixels(item["image"], stain_quota, stain_rng))
                read.add(item["slide"])
                bags += 1
    if not bags:
        raise SystemExit(f"{args.dataset_dir}: no readable bag in split {args.split!r}; nothing to compute")

    mean, std = stats_from_histograms(hist)
    print(json.dumps({"mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std]}))
    if skipped:
        print(f"warning: {len(skipped)} unreadable slide(s) skipped: {', '.join(sorted(skipped))}", file=sys.stderr)
    payload = {
        "mean": mean, "std": std,
        "pixels_per_channel": int(hist[0].sum()), "bags": bags, "slides": len(read),
        "skipped": skipped, "split": args.split, "bags_per_slide": args.bags_per_slide,
        "bag_size": args.bag_size, "patch_size": args.patch_size, "mpp": args.mpp,
        "min_tissue": args.min_tissue, "seed": args.seed, "dataset_dir": str(args.dataset_dir.resolve()),
    }
    if args.stain_json:
        pixels = np.concatenate(stain_parts)[: args.stain_pixels]
        provenance = {k: payload[k] for k in ("dataset_dir", "split", "bags", "slides", "bags_per_slide",
                                              "bag_size", "patch_size", "mpp", "min_tissue", "seed")}
        args.stain_json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(args.stain_json, json.dumps(stain_references(pixels, provenance), indent=2) + "\n")
        payload["stain_json"] = str(args.stain_json.resolve())
        print(f"stain references ({len(pixels)} tissue pixels) written to {args.stain_json}", file=sys.stderr)
    if args.json:
        write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
