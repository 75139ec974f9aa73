"""Benchmark a bundle's training step as configured against the same steps on in-memory batches; print ratios.

Usage:
    python scripts/bench_training.py --bundle mil_tumor_segmentation --dataset_dir demo/cohort --device cpu \
        --json runs/bench/train_mil_cpu.json
    python scripts/bench_training.py --bundle wsss_tissue_segmentation --dataset_dir demo/patches --device cuda

With ``--device cpu`` the bundle's ``cpu.json`` overlay is added (the CPU profile); ``--overlay`` names others.
``--set KEY=VALUE`` overrides one config value (VALUE parsed as JSON when it can be). See
:mod:`monai_wsseg.bench.training` for what is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.bench.training import run_training_benchmark
from monai_wsseg.utils.cli import refuse, write_json

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = {"mil_tumor_segmentation": "train.json", "wsss_tissue_segmentation": "train_cls.json"}


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, choices=sorted(TRAIN_CONFIG))
    p.add_argument("--dataset_dir", required=True, type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("--train", help="training config of the bundle (default: train.json / train_cls.json)")
    p.add_argument("--overlay", action="append", default=None, help="config overlays (default: cpu.json on a CPU)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one config override")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", type=Path)
    return p


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: Sequence[str] | None = None) -> dict:
    """The figures, printed one per line and written to ``--json``."""
    args = build_parser().parse_args(argv)
    configs = ROOT / "bundles" / args.bundle / "configs"
    overlays = args.overlay if args.overlay is not None else (["cpu.json"] if args.device == "cpu" else [])
    files = [configs / (args.train or TRAIN_CONFIG[args.bundle])] + [configs / name for name in overlays]
    overrides: dict[str, object] = {"bundle_root": str(ROOT / "bundles" / args.bundle),
                                    "dataset_dir": str(args.dataset_dir.resolve()),
                                    "device": f"$torch.device('{args.device}')"}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"refused: --set {item!r} is not KEY=VALUE", file=sys.stderr)
            raise SystemExit(2)
        overrides[key] = _value(value)
    try:
        out = run_training_benchmark(files, overrides, steps=args.steps, warmup=args.warmup)
    except (OSError, ValueError) as exc:
        refuse(exc)
    for key, value in out.items():
        print(f"{key:24s} {value:.3f}" if isinstance(value, float) else f"{key:24s} {value}")
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
