"""Judge a training recipe by its worst seed: train a bundle once per seed, evaluate, tabulate, apply floors.

For each seed of the protocol (``configs/stability/*.json``) the bundle is trained in this process into
``OUT/seed_<s>/train`` and evaluated on the home data's test split and the second lab's. The protocol's
``kind`` says which bundle: ``mil`` (default; ``mil_cpu.json``) evaluates the kept checkpoint (best
``val_auc``), the last epoch and the checkpoint chosen from slide labels only (see
:mod:`monai_wsseg.bundle.stability`); ``wsss`` (``wsss_cpu.json``) runs the four phases (classifier, pseudo
masks, segmenter, evaluation) with the config lists and overrides the protocol gives each, and judges test
MIoU and per-class IoU (see :mod:`monai_wsseg.bundle.stability_wsss`).

Outputs: ``OUT/stability.csv`` and ``OUT/stability.md`` (a row per seed, then median / min / max rows),
``OUT/stability.png`` (validation curves) and ``OUT/stability.log`` (the full log).

A seed whose ``OUT/seed_<s>/result.json`` exists is not run again; an interrupted one resumes (training
from its last checkpoint, evaluations already written are read back). A seed that fails is logged and
listed at the end and does not stop the others.

Exit status: 0 when every seed ran and cleared every floor, 1 when one failed or fell below a floor,
2 for bad input (a one-line error).

Usage::

    python scripts/stability.py --protocol configs/stability/mil_cpu.json --output_dir OUT
        [--seeds 0,1] [--dataset_dir DIR] [--second_lab_dir DIR] [-- --num_epochs 3 ...]
    python scripts/stability.py --protocol configs/stability/wsss_cpu.json --output_dir OUT

Bundle overrides after ``--`` are parsed as the bundle CLI (Python Fire) parses them and reach every run
whose config takes them; ``seed``, ``output_dir``, ``dataset_dir`` and the checkpoint paths are the protocol's.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.bundle import (
    SeedResult,
    StabilityResults,
    check_overrides,
    load_protocol,
    markdown_table,
    parse_seeds,
    run_stability,
)
from monai_wsseg.bundle.runs import bundle_logging, parse_overrides, split_argv

logger = logging.getLogger("stability")
PROG = "stability.py"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", type=Path, required=True,
                   help="protocol JSON (e.g. configs/stability/mil_cpu.json or wsss_cpu.json)")
    p.add_argument("--output_dir", type=Path, required=True, help="study folder (resumed when it exists)")
    p.add_argument("--seeds", help="comma-separated seeds instead of the protocol's, e.g. 0,1")
    p.add_argument("--dataset_dir", type=Path, help="home cohort instead of the protocol's")
    p.add_argument("--second_lab_dir", type=Path, help="second lab's cohort instead of the protocol's")
    return p


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def run(argv: Sequence[str] | None = None) -> StabilityResults | int:
    """The command line: the judged results, or the exit code 2 after a one-line error."""
    own, extra = split_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    try:
        protocol = load_protocol(args.protocol)
        changes: dict = {}
        if args.seeds is not None:
            changes["seeds"] = parse_seeds(args.seeds)
        if args.dataset_dir is not None:
            changes["dataset_dir"] = args.dataset_dir.resolve()
        if args.second_lab_dir is not None:
            changes["second_lab_dir"] = args.second_lab_dir.resolve()
        protocol = dataclasses.replace(protocol, **changes)
        protocol.check()
        overrides = parse_overrides(extra)
        check_overrides(protocol, {**protocol.overrides, **overrides})
        spec = protocol.figure_spec()
    except (OSError, ValueError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    n = len(protocol.seeds)

    def progress(k: int, r: SeedResult, seconds: float) -> None:
        value = r.figures[spec.headline]
        logger.info("[%d/%d] seed %d: %s in %.1f s; %s %s; %s", k + 1, n, r.seed, r.status, seconds,
                    spec.title(spec.headline, protocol.floors), "n/a" if math.isnan(value) else f"{value:.4f}",
                    r.verdict())

    start = time.perf_counter()
    with bundle_logging(out / "stability.log"):
        logger.info("stability of %s: seed(s) %s into %s", protocol.name, ", ".join(map(str, protocol.seeds)), out)
        results = run_stability(protocol, out, overrides, on_result=progress)
        print("\n" + markdown_table(results.seeds, protocol.floors, results.spec), flush=True)
        logger.info("tables: %s, %s; curves: %s", results.csv, results.markdown, results.plot)
        for r in results.failed:
            logger.error("seed %d failed: %s", r.seed, r.error)
        for r in results.below_floor:
            logger.error("seed %d below a floor: %s", r.seed, "; ".join(r.violations))
        logger.info("%s in %.1f min: %d seed(s), %d failed, %d below a floor", "pass" if results.passed else "FAIL",
                    (time.perf_counter() - start) / 60, n, len(results.failed), len(results.below_floor))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 pass, 1 a seed failed or fell below a floor, 2 bad input."""
    results = run(argv)
    if isinstance(results, int):
        return results
    return 0 if results.passed else 1


if __name__ == "__main__":
    sys.exit(main())
