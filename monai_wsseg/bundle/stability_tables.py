"""The tables and figure of a stability study: ``stability.csv``, ``stability.md`` (a row per seed, then
median / min / max rows, and the floors) and ``stability.png`` (validation curves), each written atomically.
Which figures, and their titles, come from the study's :class:`~monai_wsseg.bundle.stability_results.FigureSpec`
(default: the MIL bundle's). No torch / monai needed (matplotlib for the figure).
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai_wsseg.bundle.stability_protocol import FloorsBase
from monai_wsseg.bundle.stability_results import MIL_SPEC, FigureSpec, SeedResult
from monai_wsseg.utils.atomic import write_atomically, write_text_atomically

__all__ = ["TABLE_COLUMNS", "markdown_table", "plot_curves", "summarize", "table_columns",
           "write_tables"]


def table_columns(spec: FigureSpec = MIL_SPEC) -> tuple[str, ...]:
    """Columns of ``stability.csv``; ``seed`` holds ``median`` / ``min`` / ``max`` on the summary rows."""
    return ("seed", *spec.figures, "epochs", "train_seconds", "eval_seconds", "status", "verdict", "error")


#: Columns of the MIL study's ``stability.csv``.
TABLE_COLUMNS: tuple[str, ...] = table_columns(MIL_SPEC)


def summarize(results: Sequence[SeedResult], spec: FigureSpec = MIL_SPEC) -> dict[str, dict[str, float]]:
    """``{"median" | "min" | "max": {figure: value}}`` over the seeds that have the figure (NaN if none)."""
    out: dict[str, dict[str, float]] = {"median": {}, "min": {}, "max": {}}
    for k in spec.figures:
        values = [r.figures[k] for r in results if r.status != "failed" and not math.isnan(r.figures[k])]
        out["median"][k] = statistics.median(values) if values else math.nan
        out["min"][k] = min(values) if values else math.nan
        out["max"][k] = max(values) if values else math.nan
    return out


def _fmt(key: str, v: float, spec: FigureSpec) -> str:
    if math.isnan(v):
        return ""
    return f"{v:.0f}" if key in spec.epoch_figures else f"{v:.4f}"


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, ".10g")  # missing is blank, never 0
    return str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(results: Sequence[SeedResult], floors: FloorsBase, spec: FigureSpec = MIL_SPEC) -> str:
    """Per-seed rows, then median / min / max of ``spec.shown``; figures blank for every seed are left out."""
    candidates = spec.shown or spec.figures
    shown = [k for k in candidates if any(not math.isnan(r.figures[k]) for r in results)] or list(candidates)
    header = ["seed"] + [spec.title(k, floors) for k in shown] + ["verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in results:
        lines.append("| " + " | ".join([str(r.seed)] + [_fmt(k, r.figures[k], spec) for k in shown]
                                       + [_cell(r.verdict())]) + " |")
    for stat, values in summarize(results, spec).items():
        lines.append("| " + " | ".join([f"**{stat}**"] + [_fmt(k, values[k], spec) for k in shown] + [""]) + " |")
    return "\n".join(lines) + "\n"


def _floor_lines(results: Sequence[SeedResult], floors: FloorsBase, spec: FigureSpec) -> list[str]:
    rules = floors.rules()
    if not rules:
        return ["No floors set."]
    lines = ["| floor | limit | worst seed | worst value | seeds below |", "| --- | --- | --- | --- | --- |"]
    for _, figure, op, limit in rules:
        scored = [(r.figures[figure], r.seed) for r in results
                  if r.status != "failed" and not math.isnan(r.figures[figure])]
        worst = (max(scored) if op == "≤" else min(scored)) if scored else None
        below = [str(r.seed) for r in results if any(v.startswith(figure + " ") for v in r.violations)]
        title = spec.title(figure, floors)
        if worst is None:  # no seed has the figure: saying "none below" would read as a pass
            lines.append(f"| {title} {op} | {limit:g} | | | not checked (figure not available) |")
            continue
        lines.append(f"| {title} {op} | {limit:g} | {worst[1]} | {_fmt(figure, worst[0], spec)} | "
                     f"{', '.join(below) or 'none'} |")
    return lines


def write_tables(results: Sequence[SeedResult], out: str | os.PathLike, floors: FloorsBase, *,
                 title: str = "stability", note: str | None = None,
                 spec: FigureSpec = MIL_SPEC) -> tuple[Path, Path]:
    """Write ``out/stability.csv`` and ``out/stability.md`` atomically; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = table_columns(spec)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in results:
        row = {"seed": r.seed, **r.figures, "epochs": r.epochs, "train_seconds": r.train_seconds,
               "eval_seconds": r.eval_seconds, "status": r.status, "verdict": r.verdict(), "error": r.error}
        writer.writerow([_csv_value(row[c]) for c in columns])
    for stat, values in summarize(results, spec).items():
        writer.writerow([_csv_value(values.get(c, "")) if c != "seed" else stat for c in columns])
    csv_path = write_text_atomically(out / "stability.csv", buf.getvalue())

    failed = [r.seed for r in results if r.status == "failed"]
    below = [r.seed for r in results if r.violations]
    verdict = ("**pass**: every seed cleared every floor" if not failed and not below else
               "**fail**: " + "; ".join(part for part in (
                   f"seed(s) {', '.join(map(str, below))} below a floor" if below else "",
                   f"seed(s) {', '.join(map(str, failed))} failed" if failed else "") if part))
    md = [f"# Stability: {title}", "", f"{len(results)} seed(s); verdict {verdict}. {spec.description}", ""]
    if note:
        md += [note, ""]
    md += [markdown_table(results, floors, spec), "## Floors", "", *_floor_lines(results, floors, spec)]
    notes = [(r.seed, n) for r in results for n in r.notes]
    unchecked = [(r.seed, f) for r in results for f in r.unchecked]
    if notes or unchecked:
        md += ["", "## Notes", ""]
        md += [f"- seed {s}: {_cell(n)}" for s, n in notes]
        md += [f"- seed {s}: floor on `{f}` not checked (figure not available)" for s, f in unchecked]
    md_path = write_text_atomically(out / "stability.md", "\n".join(md) + "\n")
    return csv_path, md_path


def plot_curves(results: Sequence[SeedResult], path: str | os.PathLike, floors: FloorsBase, *,
                title: str = "stability", spec: FigureSpec = MIL_SPEC) -> Path:
    """Validation curves of every seed, one panel per metric (``spec.panels`` first, then the others found),
    with the warm-up, the ``min_val_after_warmup`` floor and each seed's kept epoch (a star) drawn on the
    ``spec.key_metric`` panel; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; a no-op when Agg is already the backend
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics: list[str] = []
    for r in results:
        for k in r.curve:
            if k != "epoch" and k not in metrics:
                metrics.append(k)
    order = {k: i for i, k in enumerate(spec.panels)}
    metrics.sort(key=lambda k: (order.get(k, len(order)), k))
    panels = metrics or [spec.key_metric]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), constrained_layout=True, squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        drawn = False
        for r in results:
            if metric in r.curve and r.curve.get("epoch"):
                line, = ax.plot(r.curve["epoch"], r.curve[metric], marker="o", markersize=3, label=f"seed {r.seed}")
                best = r.figures.get("best_epoch", math.nan)
                if metric == spec.key_metric and not math.isnan(best) and best in r.curve["epoch"]:
                    # the epoch model.pt holds: where the curve was read to choose it
                    ax.plot([best], [r.curve[metric][r.curve["epoch"].index(best)]], marker="*", markersize=11,
                            color=line.get_color(), linestyle="none")
                drawn = True
        if metric == spec.key_metric:
            if floors.warmup:
                ax.axvline(floors.warmup + 0.5, color="0.6", linestyle=":", label=f"warm-up ({floors.warmup})")
            if floors.min_val_after_warmup is not None:
                ax.axhline(floors.min_val_after_warmup, color="tab:red", linestyle="--",
                           label=f"floor ({floors.min_val_after_warmup:g})")
        if not drawn:
            ax.text(0.5, 0.5, "no validation curve\n(no validation.csv)", ha="center", va="center",
                    transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        if drawn:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Validation curves: {title}", fontsize=10)
    try:
        return write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
