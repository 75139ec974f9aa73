"""Paper A's (α, β) benchmark: train and evaluate the MIL bundle for each configuration, tabulate and plot.

The paper (Lerousseau et al., MICCAI 2020, §3.1 and §4) samples the framework space
F = {(α, β): α > 0, β ≥ 0, α + β ≤ 1} with a step of 0.2, giving 15 configurations, trains one model per
configuration and reports, on the test split, the pixel AUC (Table 1, with and without background) and
precision / recall / F1 at a threshold chosen on the validation split (Fig. 2, one α×β matrix per figure).

For each configuration this script runs the ``mil_tumor_segmentation`` bundle exactly as
``python -m monai.bundle run`` would, but in this process (``import monai`` costs seconds; 30 bundle runs
would pay it 30 times):

1. training: ``train.json`` [+ ``cpu.json``] with ``alpha``, ``beta`` and ``output_dir=OUT/a<α>_b<β>``;
2. evaluation: ``inference.json`` [+ ``cpu.json``] + ``evaluate.json`` with ``ckpt_path`` = that run's
   ``models/model.pt`` (the best validation AUC), writing ``OUT/a<α>_b<β>/evaluation/evaluation.{csv,md}``.

Outputs: ``OUT/sweep.csv``, ``OUT/sweep.md`` (one row per configuration) and ``OUT/sweep.png`` (four α×β
matrices like the paper's Fig. 2), all replaced atomically; ``OUT/sweep.log`` keeps the full log.

A configuration whose ``evaluation/evaluation.csv`` exists is not run again (its figures are read back);
an interrupted one resumes from its last training checkpoint (the bundle's own resume). A configuration
that fails is logged and listed at the end and does not stop the others; the exit code is then 1.

Usage::

    python scripts/alpha_beta_sweep.py --dataset_dir DIR --output_dir OUT [--profile cpu|gpu] [--epochs N]
        [--configs "0.2,0.2;1.0,0"] [-- --bag_size 64 --train#trainer#max_epochs 5 ...]
    python scripts/alpha_beta_sweep.py --quick --output_dir OUT      # CPU smoke benchmark, synthetic cohort

Bundle overrides after ``--`` are parsed as the bundle CLI (Python Fire) parses them: ``--key value``,
``--key=value``, a bare ``--key`` meaning ``True``, hyphens in keys read as underscores, values read as
Python literals when they are one (``0.4`` → float, ``[1,2]`` → list) and as strings otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import secrets
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(PROJECT_ROOT))

# The in-process bundle runner is shared with scripts/wsss_ablation.py; the names this script's tests use
# stay importable from here.
from monai_wsseg.bundle.runs import (  # noqa: E402
    WORKFLOW_ARGS,
    applicable,
    bundle_logging,
    one_line as _reason,
    parse_overrides,
    run_bundle,
    split_argv,
    unknown_overrides,
    write_atomically as _write_atomically,
)

BUNDLE = PROJECT_ROOT / "bundles" / "mil_tumor_segmentation"
CONFIGS = BUNDLE / "configs"

#: The paper's sampling of F: rows of the Fig. 2 matrices (α) and their columns (β).
ALPHAS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
BETAS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)

#: Figures of one configuration, read from the ``pooled`` row of its ``evaluation.csv`` (test split,
#: threshold chosen on the validation split). AUCs and the threshold are probabilities in [0, 1].
FIGURES: tuple[str, ...] = (
    "auc_with_background", "auc_without_background", "precision", "recall", "f1", "threshold",
)

#: Columns of ``sweep.csv``; seconds are wall-clock seconds spent by this script (summed over resumed runs).
TABLE_COLUMNS: tuple[str, ...] = ("alpha", "beta", *FIGURES, "train_seconds", "eval_seconds", "status", "error")

#: Panels of ``sweep.png`` (result field, panel title), the four measures of the paper's Fig. 2. The AUC
#: panel uses tissue cells only, the paper's headline figure (Table 1, black).
PANELS: tuple[tuple[str, str], ...] = (
    ("auc_without_background", "pixel AUC (tissue only)"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
)

#: ``--quick``: a CPU smoke benchmark (not the paper's setting): 8 synthetic slides of 2048² px at 0.5 µm/px,
#: 16 patches of 64 px at 2 µm/px per bag, ResNet18, 3 epochs.
QUICK_COHORT: dict[str, Any] = {"n_tumor": 4, "n_normal": 4, "size": (2048, 2048), "seed": 0,
                                "splits": ["train", "train", "val", "test"] * 2}  # tumor slides first
QUICK_OVERRIDES: dict[str, Any] = {"backbone": "resnet18", "bag_size": 16, "patch_size": 64, "mpp": 2.0,
                                   "num_epochs": 3}

#: Override keys the sweep sets itself per configuration (or that select how the bundle is run).
SWEEP_KEYS = frozenset({"alpha", "beta", "output_dir", "ckpt_path", "dataset_dir", "bundle_root"})

logger = logging.getLogger("alpha_beta_sweep")


# ---------------------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------------------
def in_framework(alpha: float, beta: float) -> bool:
    """True when (α, β) is in the paper's F: α > 0, β ≥ 0, α + β ≤ 1 (fractions of a bag's patches)."""
    return alpha > 0 and beta >= 0 and alpha + beta <= 1 + 1e-9  # 0.6 + 0.4 is 1.0000000000000002


def paper_grid() -> list[tuple[float, float]]:
    """The paper's 15 configurations, α-major: (0.2, 0), (0.2, 0.2), …, (1.0, 0)."""
    return [(a, b) for a in ALPHAS for b in BETAS if in_framework(a, b)]


def parse_configs(text: str) -> list[tuple[float, float]]:
    """``"0.2,0.2;1.0,0"`` → ``[(0.2, 0.2), (1.0, 0.0)]``; every pair must be in F, none repeated."""
    out: list[tuple[float, float]] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        try:
            a, b = (float(v) for v in part.split(","))
        except ValueError:
            raise ValueError(f"--configs: {part!r} is not 'alpha,beta'") from None
        a, b = round(a, 6), round(b, 6)
        if not in_framework(a, b):
            raise ValueError(f"--configs: ({a:g}, {b:g}) is outside the framework (alpha > 0, beta >= 0, "
                             "alpha + beta <= 1)")
        if (a, b) in out:
            raise ValueError(f"--configs: ({a:g}, {b:g}) is given twice")
        out.append((a, b))
    if not out:
        raise ValueError("--configs: no configuration given")
    return out


def config_name(alpha: float, beta: float) -> str:
    """Folder of one configuration: ``a0.2_b0.0``."""
    on_tenths = round(alpha, 1) == alpha and round(beta, 1) == beta
    return f"a{alpha:.1f}_b{beta:.1f}" if on_tenths else f"a{alpha:g}_b{beta:g}"


def _cell(alpha: float, beta: float) -> tuple[int, int] | None:
    """Row and column of (α, β) in the Fig. 2 matrices, or ``None`` when it is off the paper's grid."""
    for i, a in enumerate(ALPHAS):
        for j, b in enumerate(BETAS):
            if abs(alpha - a) < 1e-6 and abs(beta - b) < 1e-6:
                return i, j
    return None


# ---------------------------------------------------------------------------------------------------------
# results, tables and the figure (no torch / monai needed)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ConfigResult:
    """One configuration's outcome. Figures are NaN when missing (failed or not run)."""

    alpha: float
    beta: float
    status: str = "pending"  # "done" (run now), "resumed" (read back), "failed"
    error: str = ""
    figures: dict[str, float] = field(default_factory=lambda: {k: math.nan for k in FIGURES})
    train_seconds: float = math.nan  # wall-clock seconds
    eval_seconds: float = math.nan

    def row(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, **self.figures, "train_seconds": self.train_seconds,
                "eval_seconds": self.eval_seconds, "status": self.status, "error": self.error}


def _value(result: ConfigResult | Mapping[str, Any], key: str) -> float:
    """A figure of a result (``ConfigResult`` or a row mapping, for tests and re-plots); NaN when missing."""
    if isinstance(result, ConfigResult):
        v = result.figures.get(key, math.nan) if key in FIGURES else getattr(result, key, math.nan)
    else:
        v = result.get(key, math.nan)
    try:
        return float(v) if v not in (None, "") else math.nan
    except (TypeError, ValueError):
        return math.nan


def _ab(result: ConfigResult | Mapping[str, Any]) -> tuple[float, float]:
    if isinstance(result, ConfigResult):
        return result.alpha, result.beta
    return float(result["alpha"]), float(result["beta"])


def matrices(results: Sequence[ConfigResult | Mapping[str, Any]],
             keys: Sequence[str] = tuple(k for k, _ in PANELS)) -> dict[str, np.ndarray]:
    """``{key: (5, 5) float array}``, rows α = 0.2…1.0, columns β = 0…0.8; NaN where α + β > 1 or missing.

    Results off the paper's grid (possible with ``--configs``) have no cell and are left out.
    """
    out = {k: np.full((len(ALPHAS), len(BETAS)), np.nan) for k in keys}
    for r in results:
        cell = _cell(*_ab(r))
        if cell is None:
            continue
        for k in keys:
            out[k][cell] = _value(r, k)
    return out


def plot_matrix(results: Sequence[ConfigResult | Mapping[str, Any]], path: str | os.PathLike,
                *, title: str | None = None) -> dict[str, np.ndarray]:
    """Write the Fig. 2-like figure: four α×β matrices (AUC, precision, recall, F1), a value in each cell.

    Cells with α + β > 1 (outside F) are grey; configurations failed or not run are blank (white), never 0.
    The colour scale is [0, 1] in every panel so panels and sweeps compare. Written atomically as PNG.

    Returns:
        the matrices drawn, ``{result key: (5, 5) array}`` as :func:`matrices` returns them.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; a no-op when Agg is already the backend
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    mats = matrices(results)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 4.2), constrained_layout=True)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # missing results: blank
    for ax, (key, name) in zip(np.atleast_1d(axes), PANELS):
        m = mats[key]
        im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=0.0, vmax=1.0)
        for i, a in enumerate(ALPHAS):
            for j, b in enumerate(BETAS):
                if not in_framework(a, b):
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="none"))
                elif not math.isnan(m[i, j]):
                    # Dark text on the bright end of viridis, light text on the dark end.
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=9,
                            color="black" if m[i, j] > 0.6 else "white")
        ax.set_xticks(range(len(BETAS)), [f"{b:.1f}" for b in BETAS])
        ax.set_yticks(range(len(ALPHAS)), [f"{a:.1f}" for a in ALPHAS])
        ax.set_xlabel("β")
        ax.set_ylabel("α")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    heading = "(α, β) sweep: test split, pooled; precision / recall / F1 at the threshold chosen on validation"
    if title:  # the run's settings can be long: wrap them under the heading instead of cutting them off
        heading += "\n" + "\n".join(textwrap.wrap(title, width=170))
    fig.suptitle(heading, fontsize=10)
    path = Path(path)
    tmp = path.with_name(f".tmp{os.getpid()}-{secrets.token_hex(3)}-{path.name}")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return mats


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, ".10g")  # missing is blank, never 0
    return str(v)


def _fmt(v: float, digits: int = 3) -> str:
    return "" if math.isnan(v) else f"{v:.{digits}f}"


def markdown_table(results: Sequence[ConfigResult]) -> str:
    """The per-configuration table as Markdown (also printed at the end of a sweep)."""
    header = ["α", "β", "AUC (with background)", "AUC (tissue only)", "precision", "recall", "F1", "threshold",
              "train s", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in results:
        f = r.figures
        status = r.status if not r.error else f"{r.status}: {r.error}".replace("|", "\\|")
        lines.append("| " + " | ".join([
            f"{r.alpha:g}", f"{r.beta:g}", _fmt(f["auc_with_background"]), _fmt(f["auc_without_background"]),
            _fmt(f["precision"]), _fmt(f["recall"]), _fmt(f["f1"]), _fmt(f["threshold"]),
            _fmt(r.train_seconds, 0), status,
        ]) + " |")
    return "\n".join(lines) + "\n"


def write_tables(results: Sequence[ConfigResult], out: str | os.PathLike, *,
                 note: str | None = None) -> tuple[Path, Path]:
    """Write ``out/sweep.csv`` and ``out/sweep.md`` atomically; return their paths.

    Figures are on the test split, pooled over its slides, precision / recall / F1 at the threshold chosen
    on the validation split; missing figures are blank cells.
    """
    import io

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for r in results:
        row = r.row()
        writer.writerow([_csv_value(row[c]) for c in TABLE_COLUMNS])
    csv_path = _write_atomically(out / "sweep.csv", buf.getvalue())
    md = ["# (α, β) sweep", "",
          "Test split, pooled over its slides. *With background* counts every map cell with a prediction, "
          "*tissue only* the tissue cells; precision, recall and F1 are on tissue cells at the threshold "
          "chosen (best F1) on the validation split. Blank: failed or not run.", ""]
    if note:
        md += [note, ""]
    md_path = _write_atomically(out / "sweep.md", "\n".join(md) + "\n" + markdown_table(results))
    return csv_path, md_path


def read_tables(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``sweep.csv``, numbers as floats (NaN when blank): re-plot with ``plot_matrix(rows, png)``."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: (v if k in ("status", "error") else (float(v) if v else math.nan))
                         for k, v in row.items()})
    return rows


def read_evaluation(path: str | os.PathLike) -> dict[str, float]:
    """The figures of the ``pooled`` row of an ``evaluation.csv`` (see ``TumorMapEvaluation``).

    Raises:
        ValueError: the file has no pooled row.
    """
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("scope") == "pooled":
                return {k: float(row[k]) if row.get(k) not in (None, "") else math.nan for k in FIGURES}
    raise ValueError(f"{path}: no 'pooled' row")


# ---------------------------------------------------------------------------------------------------------
# overrides, parsed as the bundle CLI parses them
# ---------------------------------------------------------------------------------------------------------
def _check_overrides(extra: Mapping[str, Any]) -> None:
    owned = sorted(set(extra) & SWEEP_KEYS)
    if owned:
        raise ValueError(f"bundle overrides {owned} are set by the sweep (use --dataset_dir / --output_dir / "
                         "--configs)")
    workflow = sorted(set(extra) & WORKFLOW_ARGS)
    if workflow:
        raise ValueError(f"bundle overrides {workflow} select how the bundle runs; the sweep sets them")


# ---------------------------------------------------------------------------------------------------------
# the bundle, in this process
# ---------------------------------------------------------------------------------------------------------
def train_files(profile: str) -> list[Path]:
    return [CONFIGS / "train.json"] + ([CONFIGS / "cpu.json"] if profile == "cpu" else [])


def eval_files(profile: str) -> list[Path]:
    return [CONFIGS / "inference.json"] + ([CONFIGS / "cpu.json"] if profile == "cpu" else []) \
        + [CONFIGS / "evaluate.json"]


def train_config(alpha: float, beta: float, run_dir: Path, overrides: Mapping[str, Any], profile: str) -> None:
    """Train one configuration into ``run_dir`` (resuming from its last checkpoint when there is one)."""
    pairs = {**applicable(overrides, train_files(profile)), "alpha": alpha, "beta": beta, "output_dir": str(run_dir)}
    run_bundle(train_files(profile), "training", pairs, meta_file=CONFIGS / "metadata.json", workflow_type="train")


def evaluate_config(run_dir: Path, overrides: Mapping[str, Any], profile: str) -> None:
    """Evaluate ``run_dir/models/model.pt`` into ``run_dir/evaluation``."""
    ckpt = run_dir / "models" / "model.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: training wrote no best model (did validation run?)")
    pairs = {**applicable(overrides, eval_files(profile)), "output_dir": str(run_dir / "evaluation"),
             "ckpt_path": str(ckpt)}
    run_bundle(eval_files(profile), "run", pairs, meta_file=CONFIGS / "metadata.json", workflow_type="infer")


# ---------------------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------------------
def _read_timing(run_dir: Path) -> dict[str, float]:
    try:
        return json.loads((run_dir / "sweep_run.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_timing(run_dir: Path, timing: Mapping[str, Any]) -> None:
    _write_atomically(run_dir / "sweep_run.json", json.dumps(dict(timing), indent=2) + "\n")


def run_config(alpha: float, beta: float, out: Path, overrides: Mapping[str, Any], profile: str) -> ConfigResult:
    """Train and evaluate one configuration, or read it back when ``evaluation/evaluation.csv`` exists."""
    run_dir = out / config_name(alpha, beta)
    result = ConfigResult(alpha, beta)
    evaluation = run_dir / "evaluation" / "evaluation.csv"
    timing = _read_timing(run_dir)
    if evaluation.is_file():
        try:
            result.figures = read_evaluation(evaluation)
            result.status = "resumed"
            result.train_seconds = float(timing.get("train_seconds", math.nan))
            result.eval_seconds = float(timing.get("eval_seconds", math.nan))
            return result
        except (OSError, ValueError) as exc:  # unreadable: evaluate again rather than report nothing
            logger.warning("%s: %s; evaluating again", evaluation, _reason(exc))
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        try:
            train_config(alpha, beta, run_dir, overrides, profile)
        finally:  # a resumed training adds to the time already spent, so the column is the total cost
            timing["train_seconds"] = float(timing.get("train_seconds", 0.0)) + time.perf_counter() - start
            _write_timing(run_dir, {"alpha": alpha, "beta": beta, **timing})
        start = time.perf_counter()
        try:
            evaluate_config(run_dir, overrides, profile)
        finally:
            timing["eval_seconds"] = float(timing.get("eval_seconds", 0.0)) + time.perf_counter() - start
            _write_timing(run_dir, {"alpha": alpha, "beta": beta, **timing})
        result.figures = read_evaluation(evaluation)
        result.status = "done"
    except Exception as exc:  # one failing configuration must not end a sweep of many hours
        logger.exception("%s failed", run_dir.name)
        result.status, result.error = "failed", _reason(exc)
    result.train_seconds = float(timing.get("train_seconds", math.nan))
    result.eval_seconds = float(timing.get("eval_seconds", math.nan))
    return result


def run_sweep(configs: Sequence[tuple[float, float]], out: Path, overrides: Mapping[str, Any], profile: str,
              *, note: str | None = None,
              on_result: Callable[[int, ConfigResult, float], None] | None = None) -> list[ConfigResult]:
    """Run every configuration, rewriting the tables and the figure after each one (a sweep that stops
    early still leaves its figures so far)."""
    results: list[ConfigResult] = []
    for k, (alpha, beta) in enumerate(configs):
        start = time.perf_counter()
        results.append(run_config(alpha, beta, out, overrides, profile))
        if on_result is not None:
            on_result(k, results[-1], time.perf_counter() - start)
        write_tables(results, out, note=note)
        plot_matrix(results, out / "sweep.png", title=note)
    return results


def sweep_logging(out: Path) -> AbstractContextManager[None]:
    """Root logger at INFO to stdout and to ``out/sweep.log`` (see :func:`bundle_logging`)."""
    return bundle_logging(out / "sweep.log")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", type=Path, help="cohort (manifest.csv or slides); required unless --quick")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke benchmark: small settings; a synthetic cohort in OUT/cohort without --dataset_dir")
    p.add_argument("--configs", help="'alpha,beta;alpha,beta;...' (default: the paper's 15)")
    p.add_argument("--profile", choices=("cpu", "gpu"),
                   help="cpu adds configs/cpu.json (default: gpu when CUDA is available, else cpu)")
    p.add_argument("--epochs", type=int, help="num_epochs override")
    return p


def run(argv: Sequence[str] | None = None) -> list[ConfigResult]:
    """The command line, returning the results (``main`` turns them into an exit code)."""
    # everything after "--" is a bundle override, parsed as the bundle CLI would
    argv, extra_args = split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        extra = parse_overrides(extra_args)
        _check_overrides(extra)
        configs = parse_configs(args.configs) if args.configs else paper_grid()
    except ValueError as exc:
        parser.error(str(exc))
    if args.dataset_dir is None and not args.quick:
        parser.error("--dataset_dir is required (or --quick for a synthetic cohort)")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")

    import torch

    profile = "cpu" if args.quick else (args.profile or ("gpu" if torch.cuda.is_available() else "cpu"))
    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    total_start = time.perf_counter()
    with sweep_logging(out):
        dataset_dir = args.dataset_dir
        if dataset_dir is None:  # --quick without a cohort: make (or reuse) a small synthetic one
            from monai_wsseg.synthetic.generator import make_cohort

            dataset_dir = out / "cohort"
            if not (dataset_dir / "manifest.csv").is_file():
                logger.info("making a synthetic cohort in %s", dataset_dir)
                make_cohort(dataset_dir, **QUICK_COHORT)
        overrides: dict[str, Any] = {"bundle_root": str(BUNDLE), "dataset_dir": str(Path(dataset_dir).resolve())}
        if args.quick:
            overrides.update(QUICK_OVERRIDES)
        if args.epochs is not None:
            overrides["num_epochs"] = args.epochs
        overrides.update(extra)
        _check_applies(overrides, profile)
        note = (f"profile {profile}{' (--quick)' if args.quick else ''}; cohort {dataset_dir}; overrides "
                + ", ".join(f"{k}={v}" for k, v in overrides.items() if k not in ("bundle_root", "dataset_dir")))
        logger.info("(alpha, beta) sweep: %d configuration(s) into %s; %s", len(configs), out, note)

        def progress(k: int, r: ConfigResult, seconds: float) -> None:
            logger.info("[%d/%d] alpha=%g beta=%g: %s in %.1f s; AUC %s (tissue) / %s (with background), F1 %s%s",
                        k + 1, len(configs), r.alpha, r.beta, r.status, seconds,
                        _fmt(r.figures["auc_without_background"]), _fmt(r.figures["auc_with_background"]),
                        _fmt(r.figures["f1"]), f" — {r.error}" if r.error else "")

        results = run_sweep(configs, out, overrides, profile, note=note, on_result=progress)
        total = time.perf_counter() - total_start
        failed = [r for r in results if r.status == "failed"]
        logger.info("sweep tables: %s, %s; figure: %s", out / "sweep.csv", out / "sweep.md", out / "sweep.png")
        print("\n" + markdown_table(results), flush=True)
        if failed:
            logger.error("%d configuration(s) failed (see %s): %s", len(failed), out / "sweep.log",
                         "; ".join(f"({r.alpha:g}, {r.beta:g}): {r.error}" for r in failed))
        logger.info("total time %.1f s (%.1f min) for %d configuration(s)", total, total / 60, len(configs))
    return results


def _check_applies(overrides: Mapping[str, Any], profile: str) -> None:
    """Refuse an override that neither training nor evaluation accepts (a typo would otherwise surface as a
    KeyError in every configuration, or add an id that nothing reads)."""
    unknown = unknown_overrides(overrides, [train_files(profile), eval_files(profile)])
    if unknown:
        raise SystemExit(f"bundle overrides {unknown}: neither the training nor the evaluation config defines "
                         "them (or their parent id)")


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code: 0 when every configuration has figures, 1 when any failed."""
    results = run(argv)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))  # run from a checkout without installing the package
    sys.exit(main())
