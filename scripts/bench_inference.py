"""Benchmark whole-slide inference on one slide and print ratios, not just times.

Figures (throughputs in megapixels per second of kept tile area at the input resolution; see
:mod:`monai_wsseg.bench.inference`): (a) the network alone on windows in memory, (b) reading alone, (c) end
to end and the ratio (c)/(a), (d) peak memory, (e) FCN on large tiles vs 224 px patches with 50 % overlap,
(f) the model-zoo patch pipeline, timed on a sample and extrapolated (ratio peer ÷ ours).

Usage::

    python scripts/bench_inference.py --slide SLIDE [--device cpu|cuda] [--backbone resnet50] --json out.json

Exit status 2 with a one-line error for a slide that cannot be benchmarked (unreadable, no tissue).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.bench.inference import run_inference_benchmark
from monai_wsseg.utils.cli import refuse, write_json


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    p = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slide", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--stride", type=int, default=16, choices=(16, 32))
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--halo", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--model-windows", type=int, default=6, help="windows kept in memory for (a)")
    p.add_argument("--peer-patches", type=int, default=64, help="patches timed for (f); 0 skips it")
    p.add_argument("--peer-reader", default="openslide")
    p.add_argument("--skip-patch-mode", action="store_true", help="skip (e)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--ckpt", type=Path, help="network weights (e.g. a bundle's models/model.pt); random init without")
    p.add_argument("--skip-fast-path", action="store_true", help="skip (g), the precision's speed-up over fp32")
    p.add_argument("--decode", default="workers", choices=("workers", "device"),
                   help="(c) with windows decoded by DataLoader workers, or JPEG tiles decoded on the device")
    p.add_argument("--json", type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """The figures, printed one per line and written to ``--json``."""
    args = build_parser().parse_args(argv)
    try:
        out = run_inference_benchmark(
            args.slide, device=args.device, backbone=args.backbone, mpp=args.mpp, stride=args.stride, tile=args.tile,
            halo=args.halo, batch_size=args.batch_size, workers=args.workers, model_windows=args.model_windows,
            peer_patches=args.peer_patches, peer_reader=args.peer_reader, patch_mode=not args.skip_patch_mode,
            precision=args.precision, ckpt=args.ckpt, fast_path_check=not args.skip_fast_path,
            decode=args.decode)
    except (OSError, ValueError) as exc:
        refuse(exc)
    for key, value in out.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"{key:32s} {shown}")
    if args.json:
        write_json(args.json, out, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    return out


if __name__ == "__main__":
    main()
