"""Paper A's (α, β) benchmark: train and evaluate the MIL bundle for each configuration, tabulate and plot.

The grid (the paper's 15 configurations of F = {α > 0, β ≥ 0, α + β ≤ 1} with a step of 0.2), the bundle's
config files per profile and the ``--quick`` settings are a run definition, ``configs/sweep/alpha_beta.json``
(``--sweep`` reads another). Each configuration trains into ``OUT/a<α>_b<β>`` and is evaluated into
``OUT/a<α>_b<β>/evaluation``, both in this process (see :mod:`monai_wsseg.mil.sweep`).

Outputs: ``OUT/sweep.csv``, ``OUT/sweep.md`` (one row per configuration) and ``OUT/sweep.png`` (four α×β
matrices like the paper's Fig. 2), all replaced atomically; ``OUT/sweep.log`` keeps the full log.

A configuration whose ``evaluation/evaluation.csv`` exists is not run again (its figures are read back);
an interrupted one resumes from its last training checkpoint. A configuration that fails is logged and
listed at the end and does not stop the others; the exit code is then 1 (2 for a bad command line or
definition, with a one-line error).

Usage::

    python scripts/alpha_beta_sweep.py --dataset_dir DIR --output_dir OUT [--profile cpu|gpu] [--epochs N]
        [--configs "0.2,0.2;1.0,0"] [--sweep configs/sweep/alpha_beta.json] [-- --bag_size 64 ...]
    python scripts/alpha_beta_sweep.py --quick --output_dir OUT      # CPU smoke benchmark, synthetic cohort

Bundle overrides after ``--`` are parsed as the bundle CLI (Python Fire) parses them: ``--key value``,
``--key=value``, a bare ``--key`` meaning ``True``, hyphens in keys read as underscores, values read as
Python literals when they are one (``0.4`` → float, ``[1,2]`` → list) and as strings otherwise.
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
from monai_wsseg.mil.sweep import (
    check_applies,
    check_sweep_overrides,
    load_sweep,
    parse_configs,
    quick_cohort,
    run_sweep,
)
from monai_wsseg.mil.sweep_tables import ConfigResult, format_figure, markdown_table

DEFAULT_SWEEP = Path(__file__).resolve().parents[1] / "configs" / "sweep" / "alpha_beta.json"
logger = logging.getLogger("alpha_beta_sweep")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    p = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", type=Path, help="cohort (manifest.csv or slides); required unless --quick")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke benchmark: small settings; a synthetic cohort in OUT/cohort without --dataset_dir")
    p.add_argument("--configs", help="'alpha,beta;alpha,beta;...' (default: the definition's grid)")
    p.add_argument("--sweep", type=Path, default=DEFAULT_SWEEP, help="sweep definition (default: %(default)s)")
    p.add_argument("--profile", choices=("cpu", "gpu"),
                   help="which config lists of the definition run (default: gpu when CUDA is available, else cpu)")
    p.add_argument("--epochs", type=int, help="num_epochs override")
    return p


def run(argv: Sequence[str] | None = None) -> list[ConfigResult]:
    """The command line, returning the results (``main`` turns them into an exit code)."""
    own, extra_args = split_argv(sys.argv[1:] if argv is None else argv)  # after "--": bundle overrides
    parser = build_parser()
    args = parser.parse_args(own)
    try:
        definition = load_sweep(args.sweep)
        extra = parse_overrides(extra_args)
        check_sweep_overrides(extra)
        configs = parse_configs(args.configs) if args.configs else definition.grid()
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    if args.dataset_dir is None and not args.quick:
        parser.error("--dataset_dir is required (or --quick for a synthetic cohort)")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")

    import torch

    profile = "cpu" if args.quick else (args.profile or ("gpu" if torch.cuda.is_available() else "cpu"))
    out = args.output_dir.resolve()
    dataset_dir = args.dataset_dir or out / "cohort"  # --quick without a cohort: a small synthetic one
    overrides: dict[str, Any] = {"bundle_root": str(definition.bundle), "dataset_dir": str(dataset_dir.resolve())}
    if args.quick:
        overrides.update(definition.quick_overrides)
    if args.epochs is not None:
        overrides["num_epochs"] = args.epochs
    overrides.update(extra)
    try:
        check_applies(definition, overrides, profile)
    except ValueError as exc:
        parser.error(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    total_start = time.perf_counter()
    with bundle_logging(out / "sweep.log"):
        if args.dataset_dir is None:
            quick_cohort(definition, dataset_dir)
        note = (f"profile {profile}{' (--quick)' if args.quick else ''}; cohort {dataset_dir}; overrides "
                + ", ".join(f"{k}={v}" for k, v in overrides.items() if k not in ("bundle_root", "dataset_dir")))
        logger.info("(alpha, beta) sweep: %d configuration(s) into %s; %s", len(configs), out, note)

        def progress(k: int, r: ConfigResult, seconds: float) -> None:
            f = r.figures
            logger.info("[%d/%d] alpha=%g beta=%g: %s in %.1f s; AUC %s (tissue) / %s (with background), F1 %s%s",
                        k + 1, len(configs), r.alpha, r.beta, r.status, seconds,
                        format_figure(f["auc_without_background"]), format_figure(f["auc_with_background"]),
                        format_figure(f["f1"]), f" — {r.error}" if r.error else "")

        results = run_sweep(definition, configs, out, overrides, profile, note=note, on_result=progress)
        total = time.perf_counter() - total_start
        failed = [r for r in results if r.status == "failed"]
        logger.info("sweep tables: %s, %s; figure: %s", out / "sweep.csv", out / "sweep.md", out / "sweep.png")
        print("\n" + markdown_table(results), flush=True)
        if failed:
            logger.error("%d configuration(s) failed (see %s): %s", len(failed), out / "sweep.log",
                         "; ".join(f"({r.alpha:g}, {r.beta:g}): {r.error}" for r in failed))
        logger.info("total time %.1f s (%.1f min) for %d configuration(s)", total, total / 60, len(configs))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code: 0 when every configuration has figures, 1 when any failed, 2 for bad input."""
    results = run(argv)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
