#!/usr/bin/env python
r"""Patch AUC of a tumor checkpoint on PatchCamelyon, with paper A's protocol (×2 bilinear, 0-padded to 224).

    python scripts/pcam_auc.py --x camelyonpatch_level_2_split_test_x.h5 \
        --y camelyonpatch_level_2_split_test_y.h5 --ckpt model.pt --json pcam.json
    python scripts/pcam_auc.py --x X.h5 --y Y.h5 --ckpt model.pt --backbone resnet18 --limit 2000

The checkpoint is a ResNetFCN state dict, raw or under "model" / "network" / "state_dict"; DDP's
"module." prefixes are stripped. --mean/--std normalise [0, 1] RGB (default 0.5 0.5 0.5, as the slide
inferer); the padding is 0 after normalisation (see monai_wsseg.datasets.pcam). --limit N takes the first
N patches of the file.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from monai_wsseg.datasets.pcam import DEFAULT_MEAN, DEFAULT_STD, PCamDataset, evaluate_pcam
from monai_wsseg.networks.checkpoint import load_weights
from monai_wsseg.networks.fcn import ResNetFCN
from monai_wsseg.utils.cli import write_json


def main(argv: list[str] | None = None) -> dict:
    """Evaluate ``--ckpt`` on PCam (``argv``: the options; default ``sys.argv[1:]``); returns the result dict."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--x", required=True, type=Path, help="..._x.h5 (dataset x, N×96×96×3 uint8)")
    p.add_argument("--y", required=True, type=Path, help="..._y.h5 (dataset y, N×1×1×1 labels)")
    p.add_argument("--ckpt", required=True, type=Path, help="ResNetFCN weights")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--output-stride", type=int, default=16, choices=(16, 32))
    p.add_argument("--mean", type=float, nargs=3, default=list(DEFAULT_MEAN), metavar=("R", "G", "B"))
    p.add_argument("--std", type=float, nargs=3, default=list(DEFAULT_STD), metavar=("R", "G", "B"))
    p.add_argument("--limit", type=int, help="evaluate the first N patches only")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be ≥ 1")

    try:
        dataset = PCamDataset(args.x, args.y)
        if args.limit is not None:
            dataset = PCamDataset(args.x, args.y, indices=range(min(args.limit, dataset.num_patches)))
        network = ResNetFCN(backbone=args.backbone, num_classes=1, output_stride=args.output_stride)
        load_weights(network, args.ckpt)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc

    start = time.perf_counter()
    result = evaluate_pcam(network, dataset, batch_size=args.batch_size, num_workers=args.workers,
                           device=args.device, mean=args.mean, std=args.std, progress=sys.stderr.isatty())
    out = {
        "auc": result["auc"] if math.isfinite(result["auc"]) else None,  # NaN (one class) is not JSON
        "n": result["n"], "positives": result["positives"],
        "x": str(args.x), "y": str(args.y), "ckpt": str(args.ckpt), "backbone": args.backbone,
        "output_stride": args.output_stride, "mean": args.mean, "std": args.std, "limit": args.limit,
        "preprocess": "bilinear x2 (align_corners=False), normalise, zero-pad centred to 224",
        "seconds": time.perf_counter() - start,
    }
    print(f"PCam patch AUC {result['auc']:.4f}  ({out['n']} patches, {out['positives']} tumor)")
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
