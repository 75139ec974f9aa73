"""The results of an (α, β) sweep (:mod:`.sweep`) and what is written from them: ``sweep.csv``, ``sweep.md``
and ``sweep.png`` (four α × β matrices like paper A's Fig. 2), each replaced atomically.

α and β are fractions of a bag's patches (the top-α patches are labelled tumor, the bottom-β normal); a
configuration is in the paper's framework F when α > 0, β ≥ 0 and α + β ≤ 1. The figures of one
configuration come from the ``pooled`` row of its ``evaluation.csv`` (test split; precision / recall / F1 at
the threshold chosen on the validation split): AUCs, precision, recall, F1 and the threshold are in
[0, 1]; seconds are wall-clock seconds. A missing figure is NaN in memory and a blank cell on disk, never 0.

No torch / monai needed (matplotlib for the figure).
"""

from __future__ import annotations

import csv
import io
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_wsseg.bundle.stability_results import nan_float, pooled_row
from monai_wsseg.utils.atomic import write_atomically, write_text_atomically

__all__ = ["FIGURES", "PANELS", "TABLE_COLUMNS", "ConfigResult", "format_figure", "in_framework", "markdown_table",
           "matrices", "plot_matrix", "read_evaluation", "read_tables", "write_tables"]

#: Figures of one configuration, read from the ``pooled`` row of its ``evaluation.csv``.
FIGURES: tuple[str, ...] = (
    "auc_with_background", "auc_without_background", "precision", "recall", "f1", "threshold",
)

#: Columns of ``sweep.csv``; seconds are wall-clock seconds spent by the sweep (summed over resumed runs).
TABLE_COLUMNS: tuple[str, ...] = ("alpha", "beta", *FIGURES, "train_seconds", "eval_seconds", "status", "error")

#: Panels of ``sweep.png`` (result field, panel title), the four measures of the paper's Fig. 2. The AUC
#: panel uses tissue cells only, the paper's headline figure (Table 1, black).
PANELS: tuple[tuple[str, str], ...] = (
    ("auc_without_background", "pixel AUC (tissue only)"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
)


_PANEL_KEYS: tuple[str, ...] = tuple(key for key, _ in PANELS)


def in_framework(alpha: float, beta: float) -> bool:
    """True when (α, β) is in the paper's F: α > 0, β ≥ 0, α + β ≤ 1 (fractions of a bag's patches)."""
    return alpha > 0 and beta >= 0 and alpha + beta <= 1 + 1e-9  # 0.6 + 0.4 is 1.0000000000000002


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
        """The configuration's row of ``sweep.csv``, ``{column: value}`` (figures NaN when missing)."""
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


def _cell(alpha: float, beta: float, alphas: Sequence[float], betas: Sequence[float]) -> tuple[int, int] | None:
    """Row and column of (α, β) in the matrices, or ``None`` when it is off the grid."""
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            if abs(alpha - a) < 1e-6 and abs(beta - b) < 1e-6:
                return i, j
    return None


def matrices(results: Sequence[ConfigResult | Mapping[str, Any]], alphas: Sequence[float], betas: Sequence[float],
             keys: Sequence[str] = _PANEL_KEYS) -> dict[str, np.ndarray]:
    """``{key: (len(alphas), len(betas)) float array}``: rows α, columns β; NaN where α + β > 1 or missing.

    Results off the grid (possible with a chosen list of configurations) have no cell and are left out.
    """
    out = {k: np.full((len(alphas), len(betas)), np.nan) for k in keys}
    for r in results:
        cell = _cell(*_ab(r), alphas, betas)
        if cell is None:
            continue
        for k in keys:
            out[k][cell] = _value(r, k)
    return out


def plot_matrix(results: Sequence[ConfigResult | Mapping[str, Any]], path: str | os.PathLike,
                alphas: Sequence[float], betas: Sequence[float], *, title: str | None = None) -> dict[str, np.ndarray]:
    """Write the Fig. 2-like figure: four α×β matrices (AUC, precision, recall, F1), a value in each cell.

    Cells with α + β > 1 (outside F) are grey; configurations failed or not run are blank (white), never 0.
    The colour scale is [0, 1] in every panel so panels and sweeps compare. Written atomically as PNG.

    Returns:
        the matrices drawn, ``{result key: (len(alphas), len(betas)) array}`` as :func:`matrices` returns them.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; a no-op when Agg is already the backend
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    mats = matrices(results, alphas, betas)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 4.2), constrained_layout=True)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # missing results: blank
    for ax, (key, name) in zip(np.atleast_1d(axes), PANELS, strict=True):
        m = mats[key]
        im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=0.0, vmax=1.0)
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                if not in_framework(a, b):
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="none"))
                elif not math.isnan(m[i, j]):
                    # Dark text on the bright end of viridis, light text on the dark end.
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=9,
                            color="black" if m[i, j] > 0.6 else "white")
        ax.set_xticks(range(len(betas)), [f"{b:.1f}" for b in betas])
        ax.set_yticks(range(len(alphas)), [f"{a:.1f}" for a in alphas])
        ax.set_xlabel("β")
        ax.set_ylabel("α")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    heading = "(α, β) sweep: test split, pooled; precision / recall / F1 at the threshold chosen on validation"
    if title:  # the run's settings can be long: wrap them under the heading instead of cutting them off
        heading += "\n" + "\n".join(textwrap.wrap(title, width=170))
    fig.suptitle(heading, fontsize=10)
    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
    return mats


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, ".10g")  # missing is blank, never 0
    return str(v)


def format_figure(v: float, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals; ``""`` for NaN (a missing figure is blank, never 0)."""
    return "" if math.isnan(v) else f"{v:.{digits}f}"


def markdown_table(results: Sequence[ConfigResult]) -> str:
    """The per-configuration table as Markdown (also printed at the end of a sweep)."""
    header = ["α", "β", "AUC (with background)", "AUC (tissue only)", "precision", "recall", "F1", "threshold",
              "train s", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in results:
        f, num = r.figures, format_figure
        status = r.status if not r.error else f"{r.status}: {r.error}".replace("|", "\\|")
        lines.append("| " + " | ".join([
            f"{r.alpha:g}", f"{r.beta:g}", num(f["auc_with_background"]), num(f["auc_without_background"]),
            num(f["precision"]), num(f["recall"]), num(f["f1"]), num(f["threshold"]), num(r.train_seconds, 0), status,
        ]) + " |")
    return "\n".join(lines) + "\n"


def write_tables(results: Sequence[ConfigResult], out: str | os.PathLike, *,
                 note: str | None = None) -> tuple[Path, Path]:
    """Write ``out/sweep.csv`` and ``out/sweep.md`` atomically; return their paths.

    Figures are on the test split, pooled over its slides, precision / recall / F1 at the threshold chosen
    on the validation split; missing figures are blank cells.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for r in results:
        row = r.row()
        writer.writerow([_csv_value(row[c]) for c in TABLE_COLUMNS])
    csv_path = write_text_atomically(out / "sweep.csv", buf.getvalue())
    md = ["# (α, β) sweep", "",
          "Test split, pooled over its slides. *With background* counts every map cell with a prediction, "
          "*tissue only* the tissue cells; precision, recall and F1 are on tissue cells at the threshold "
          "chosen (best F1) on the validation split. Blank: failed or not run.", ""]
    if note:
        md += [note, ""]
    md_path = write_text_atomically(out / "sweep.md", "\n".join(md) + "\n" + markdown_table(results))
    return csv_path, md_path


def read_tables(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``sweep.csv``, numbers as floats (NaN when blank): re-plot with :func:`plot_matrix`."""
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
    row = pooled_row(path)
    return {k: nan_float(row.get(k)) for k in FIGURES}
