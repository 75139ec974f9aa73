"""A static HTML report of a cohort run: each slide's map over its thumbnail with its metrics, the pooled
metrics, the (α, β) matrix when a sweep is given, and links to the TIFF and GeoJSON outputs.

Inputs are the folders the bundles and scripts write: ``--maps_dir`` (a cohort inference output: map PNGs,
TIFFs, GeoJSON, slide reports), ``--evaluation_dir`` (optional: ``evaluation.csv`` of ``evaluate.json``) and
``--sweep_dir`` (optional: ``scripts/alpha_beta_sweep.py`` output, ``sweep.csv`` and ``sweep.png``). See
:mod:`monai_wsseg.io.report_html`. Images are linked by relative path, or embedded with ``--embed`` for a
single file to share; the page marks images that fail to load.

Usage::

    python scripts/report.py --maps_dir MAPS [--evaluation_dir EVAL] [--sweep_dir SWEEP]
        [--output MAPS/report.html] [--title "..."] [--embed]

Exit status 2 with a one-line error when a folder or the evaluation table is missing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.io.report_html import build_report
from monai_wsseg.utils.cli import refuse


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps_dir", type=Path, required=True)
    parser.add_argument("--evaluation_dir", type=Path, default=None)
    parser.add_argument("--sweep_dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="default: MAPS_DIR/report.html")
    parser.add_argument("--title", default="Cohort report")
    parser.add_argument("--embed", action="store_true", help="embed the images (one file to share)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """The report's path."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = build_report(args.maps_dir, args.output or args.maps_dir / "report.html", args.evaluation_dir,
                           args.sweep_dir, args.title, args.embed)
    except (OSError, ValueError) as exc:
        refuse(exc)
    print(f"report: {out} ({time.perf_counter() - start:.2f} s)")
    return out


if __name__ == "__main__":
    main()
