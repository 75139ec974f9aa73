"""Single-core decode throughput of a slide's tiles per codec and backend, and the cores a GPU needs; prints JSON.

Usage:
    python scripts/bench_decode.py --slide demo/cohort/slides/synth-0000-tumor.tif [--model-mpx-s 283] [--json F]

See :mod:`monai_wsseg.bench.decode` for what is timed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.bench.decode import H200_RESNET50_MPX_S, decode_rates
from monai_wsseg.utils.cli import refuse, write_json


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slide", required=True)
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--tiles", type=int, default=48)
    p.add_argument("--model-mpx-s", type=float, default=H200_RESNET50_MPX_S,
                   help="what the network consumes, Mpx/s (default: ResNet50 FCN fp16 on an H200)")
    p.add_argument("--json", type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """The figures as JSON on stdout (and in ``--json``)."""
    args = build_parser().parse_args(argv)
    try:
        out = decode_rates(args.slide, tiles=args.tiles, level=args.level, model_mpx_s=args.model_mpx_s)
    except (OSError, ValueError) as exc:
        refuse(exc)
    print(json.dumps(out, indent=2))
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
