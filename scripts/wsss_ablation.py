"""Paper B's ablation (Han et al. 2022, §V-B, Table III) as one command: train and evaluate every model of
the table with the ``wsss_tissue_segmentation`` bundle, and tabulate them as the paper does.

The runs and rows are a run definition, ``configs/ablation/wsss_table3.json`` (``--definition`` reads
another): rows (1)–(3) phase-1 classifiers (no dropout attention / constant μ / PDA: ``p1_none``,
``p1_constant``, ``p1_pda``), (4)–(6) phase-2 segmenters on one layer of p1_pda's pseudo masks (``p2_b4_3``,
``p2_b5_2``, ``p2_bn7``), (7) multi-layer pseudo supervision (``p2_multi``), (8) the same with the
classification gate. Each run trains and is evaluated in ``OUT/<run>``, in this process (see
:mod:`monai_wsseg.wsss.ablation`).

Outputs: ``OUT/ablation.csv`` and ``OUT/ablation.md`` (replaced atomically after each run; the notes give
each run's wall time), ``OUT/ablation.log`` (the full log). A run whose evaluation exists is read back, not
run again; a phase-2 run made with a p1_pda classifier that has been trained again since is redone. A
failing run is logged and named at the end, the others go on (phase-2 runs need p1_pda), and the exit code
is then 1 (2 for a bad command line or definition, with a one-line error). Finished runs are not redone
when the overrides change: give new settings a new ``OUT``.

Usage::

    python scripts/wsss_ablation.py --dataset_dir DIR --output_dir OUT [--profile cpu|gpu] [--rows 1,3,7,8]
        [--definition configs/ablation/wsss_table3.json] [-- --num_epochs 2 --batch_size 4 ...]
    python scripts/wsss_ablation.py --quick --output_dir OUT     # smoke run: tiny synthetic patches, 1 epoch

``--profile`` picks the definition's config lists (cpu: ``cpu.json`` for phase-1 training, ``cpu_seg.json``
for phase-2 training and evaluation, and ``cpu.json``'s ``width`` for the pseudo masks and the evaluation;
default: gpu when CUDA is available). Bundle overrides after ``--`` are parsed as the bundle CLI parses them
and go to every phase whose config accepts them (a nested id needs its parent there); one that no phase
defines is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai_wsseg.bundle.runs import bundle_logging, parse_overrides, split_argv
from monai_wsseg.wsss.ablation import (
    Setup,
    check_ablation_overrides,
    load_ablation,
    parse_rows,
    quick_patches,
    run_ablation,
    runs_for,
)
from monai_wsseg.wsss.ablation_tables import table_rows, write_tables

DEFAULT_DEFINITION = Path(__file__).resolve().parents[1] / "configs" / "ablation" / "wsss_table3.json"
logger = logging.getLogger("wsss_ablation")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    p = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", type=Path, help="patch set (training/, val/, test/); required unless --quick")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--profile", choices=("cpu", "gpu"),
                   help="which config lists of the definition run (default: gpu when CUDA is available, else cpu)")
    p.add_argument("--rows", help="rows of the table to make, e.g. 1,3,7,8 (default: all); only the runs they "
                                  "need run")
    p.add_argument("--definition", type=Path, default=DEFAULT_DEFINITION,
                   help="ablation definition (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 epoch, batch 4; a tiny synthetic patch set in OUT/patches without --dataset_dir")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code: 0 when every asked row has figures, 1 when a run failed; 2 for a bad command line."""
    own, extra_args = split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(own)
    try:
        definition = load_ablation(args.definition)
        rows = parse_rows(args.rows or ",".join(str(r.number) for r in definition.rows), definition)
        extra = parse_overrides(extra_args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    if args.dataset_dir is None and not args.quick:
        parser.error("--dataset_dir is required (or --quick for a synthetic patch set)")

    import torch

    profile = args.profile or ("gpu" if torch.cuda.is_available() and not args.quick else "cpu")
    out = args.output_dir.resolve()
    dataset_dir = args.dataset_dir or out / "patches"  # --quick without a patch set: a tiny synthetic one
    overrides: dict[str, Any] = {"bundle_root": str(definition.bundle), "dataset_dir": str(dataset_dir.resolve())}
    if args.quick:
        overrides.update(definition.quick_overrides)
    overrides.update(extra)
    setup = Setup(definition, out, profile, overrides)
    try:
        check_ablation_overrides(setup, extra)
    except ValueError as exc:
        parser.error(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    with bundle_logging(out / "ablation.log"):
        if args.dataset_dir is None:
            quick_patches(definition, dataset_dir)
        note = (f"Profile {profile}{' (--quick)' if args.quick else ''}; patches {dataset_dir}; overrides: "
                + (", ".join(f"{k}={v}" for k, v in overrides.items() if k not in ("bundle_root", "dataset_dir"))
                   or "none"))
        logger.info("WSSS ablation: rows %s need runs %s, into %s. %s", rows, runs_for(definition, rows), out, note)
        total = time.perf_counter()
        results = run_ablation(setup, rows, note)
        csv_path, md_path = write_tables(definition, rows, results, out, note)
        print("\n" + md_path.read_text(encoding="utf-8"), flush=True)
        logger.info("tables: %s, %s; total %.1f s", csv_path, md_path, time.perf_counter() - total)
        _, table = table_rows(definition, rows, results)
        failed = {name: r.error for name, r in results.items() if r.status == "failed"}
        missing = [f"({t['row']})" for t in table if t["status"] != "failed" and t["error"]]
        if failed or missing:
            logger.error("failed: %s", "; ".join([f"{n} ({e})" for n, e in failed.items()]
                                                 + [f"row {m} has no figures" for m in missing]))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
