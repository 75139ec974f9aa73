"""Write a huge synthetic pyramidal JPEG TIFF (e.g. 100,000 × 100,000 px) without ever holding a level in memory.

A mosaic of 256 px cells: irregular tissue blobs of a few H&E-like textures on white glass, every level a
tiled top-level page (see :mod:`monai_wsseg.bench.large_slide`). Written atomically; prints one line per level,
then the slide's summary as JSON (with ``--check``: what each backend reads and the tissue mask fraction).

Usage::

    python scripts/make_large_slide.py /tmp/large.tif --width 100000 --height 100000 --tissue 0.3
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.bench.large_slide import check_slide, make_large_slide


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="output .tif")
    parser.add_argument("--width", type=int, default=100_000)
    parser.add_argument("--height", type=int, default=None, help="default: --width")
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--tissue", type=float, default=0.3, help="tissue fraction of the slide area")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--check", action="store_true", help="open it with every backend and compute its tissue mask")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """The slide's summary (what :meth:`LargeSlide.summary` gives, plus ``check``); exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        info = make_large_slide(args.path, args.width, args.height or args.width, mpp=args.mpp,
                                tissue_fraction=args.tissue, seed=args.seed, quality=args.quality, progress=True)
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    out = info.summary()
    if args.check:
        out["check"] = check_slide(args.path, info)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
