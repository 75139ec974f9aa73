"""Whole-slide inference on a huge slide (100,000 × 100,000 px) in bounded memory: time and peak RSS.

This measures memory and stitching, not compute: a tiny fully convolutional network (149 parameters) runs
through the real engine; the tissue mask, inference and the map TIFF are each timed with their own peak
resident memory (see :mod:`monai_wsseg.bench.large_inference`). The slide is made with
:func:`monai_wsseg.bench.large_slide.make_large_slide` (``scripts/make_large_slide.py``) when ``--slide``
does not exist.

Usage::

    python scripts/bench_large_slide.py --slide /tmp/large.tif --size 100000 --tissue 0.3 --json out.json

Exit status 2 with a one-line error for a slide that cannot be made or read.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.bench.large_inference import benchmark_report, run_benchmark
from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.utils.cli import refuse


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    parser.add_argument("--slide", default=None,
                        help="slide path; made when absent (default /tmp/wsseg_large_<size>.tif)")
    parser.add_argument("--size", type=int, default=100_000, help="width (and height) of a slide to make")
    parser.add_argument("--height", type=int, default=None, help="height of a slide to make (default --size)")
    parser.add_argument("--tissue", type=float, default=0.3, help="tissue fraction of a slide to make")
    parser.add_argument("--mpp", type=float, default=0.5, help="input microns per pixel")
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--halo", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", default="auto", choices=["auto", "openslide", "tifffile", "cucim"])
    parser.add_argument("--map", default=None, help="keep the map TIFF here (default: a temporary file)")
    parser.add_argument("--delete-slide", action="store_true", help="delete the slide afterwards")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", default=None, help="write the figures here")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """The figures of :func:`run_benchmark`, printed as a short report and written to ``--json``."""
    args = build_parser().parse_args(argv)
    slide = args.slide or f"/tmp/wsseg_large_{args.size}.tif"
    try:
        result = run_benchmark(
            slide, size=args.size, height=args.height, tissue_fraction=args.tissue, mpp=args.mpp, tile=args.tile,
            halo=args.halo, batch_size=args.batch, num_workers=args.workers, backend=args.backend, map_path=args.map,
            delete_slide=args.delete_slide, seed=args.seed, progress=args.progress,
        )
    except (OSError, ValueError) as exc:
        refuse(exc)
    print(benchmark_report(result), flush=True)
    if args.json:
        write_text_atomically(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
