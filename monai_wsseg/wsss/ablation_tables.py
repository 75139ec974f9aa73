"""The results of a Table III ablation (:mod:`.ablation`) and its tables: ``ablation.csv`` and ``ablation.md``
(paper B, Han et al. 2022, Table III, as the paper lays it out), each written atomically.

A row of the table takes its figures from one row of one run's ``evaluation.csv`` (see
:func:`monai_wsseg.metrics.tissue.read_scores_table`): IoU per class, FwIoU, MIoU and ACC, fractions in
[0, 1]. A missing figure (a class absent from the split, a failed run) is NaN in memory and a blank cell on
disk, never 0. Seconds are wall-clock seconds, summed over attempts.

Standard library only: no numpy, torch or monai.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai_wsseg.utils.atomic import write_text_atomically

if TYPE_CHECKING:
    from monai_wsseg.wsss.ablation import AblationDefinition

__all__ = ["FIGURES", "RunResult", "class_names", "format_number", "markdown", "read_table", "table_rows",
           "write_tables"]

#: The figures of a row besides per-class IoU, as the evaluation CSV names them and in the paper's order.
FIGURES: tuple[str, ...] = ("fwiou", "miou", "acc")


@dataclass
class RunResult:
    """The outcome of one run (one trained model) of the ablation.

    Attributes:
        name: the run's name (its folder).
        status: ``"done"`` (run now), ``"resumed"`` (read back), ``"failed"`` or ``"pending"``.
        error: one line saying why it failed.
        seconds: wall-clock seconds per step (``train``, ``pseudo``, ``evaluate``), summed over attempts.
        rows: the run's ``evaluation.csv``: row → column → value.
    """

    name: str
    status: str = "pending"
    error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        """Seconds of every step; NaN when none was recorded."""
        return sum(self.seconds.values()) if self.seconds else math.nan


def class_names(results: Mapping[str, RunResult]) -> list[str]:
    """Classes in the order of the evaluation CSVs' ``iou_<class>`` columns."""
    names: list[str] = []
    for r in results.values():
        for figures in r.rows.values():
            names += [k[4:] for k in figures if k.startswith("iou_") and k[4:] not in names]
    return names


def format_number(v: float, digits: int = 4) -> str:
    """``v`` with ``digits`` decimals; ``""`` for NaN (missing is blank, never 0)."""
    return "" if math.isnan(v) else f"{v:.{digits}f}"


def table_rows(definition: AblationDefinition, rows: Sequence[int],
               results: Mapping[str, RunResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of ``ablation.csv``: one row per asked row number of the table, figures NaN when missing."""
    classes = class_names(results)
    columns = ["row", "phase", "pda", "pseudo_supervision", "class_gate", *(f"iou_{c}" for c in classes), *FIGURES,
               "run", "source_row", "run_seconds", "status", "error"]
    out = []
    for n in rows:
        spec = definition.rows[n - 1]
        r = results.get(spec.run, RunResult(spec.run))
        figures = r.rows.get(spec.source, {})
        error = r.error
        if r.status in ("done", "resumed") and not figures:
            error = f"{spec.source!r} is not a row of {spec.run}/evaluation/evaluation.csv"
        values = {c: figures.get(c, math.nan) for c in columns if c.startswith("iou_") or c in FIGURES}
        out.append({"row": n, "phase": definition.runs[spec.run].phase, "pda": spec.pda,
                    "pseudo_supervision": spec.pseudo, "class_gate": int(spec.gate), **values, "run": spec.run,
                    "source_row": spec.source, "run_seconds": r.total_seconds, "status": r.status, "error": error})
    return columns, out


def markdown(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], results: Mapping[str, RunResult],
             note: str) -> str:
    """Table III as the paper lays it out, with notes: settings, each run's wall time, failures."""
    classes = [c[4:] for c in columns if c.startswith("iou_")]
    header = ["", "Phase", "PDA", "Pseudo supervision", "Class-gate", *classes, "FwIoU", "MIoU", "ACC"]
    lines = ["# Ablation studies (Han et al. 2022, Table III)", "",
             "IoU per class, FwIoU, MIoU and ACC on the evaluation split (`evaluate.json`'s `split`), white "
             "background ignored. Rows (1)–(3): phase-1 Grad-CAM masks of layer bn7 (`cam:bn7`); (4)–(8): the "
             "phase-2 segmenter (`segmentation`; (8) `segmentation+gate`). PDA: DA is dropout attention with a "
             "constant μ = 0.7. Blank: the class is absent from the split (NaN), or the run failed or did not "
             "run.", "", note, "",
             "| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        pda = {"none": "-", "constant": "DA", "pda": "✓"}[row["pda"]]
        pseudo = {"": "-", "multi": "Multi-Layer"}.get(row["pseudo_supervision"], row["pseudo_supervision"])
        cells = [f"({row['row']})", f"Phase {row['phase']}", pda, pseudo, "✓" if row["class_gate"] else "-",
                 *(format_number(row[f"iou_{c}"]) for c in classes), *(format_number(row[k]) for k in FIGURES)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Wall time per run (this script's, summed over attempts; p2_multi serves rows (7) and (8)):", ""]
    for r in results.values():
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items())
        lines.append(f"- {r.name}: {format_number(r.total_seconds, 1) or '?'} s ({steps or 'no time recorded'}), "
                     f"{r.status}" + (f" — {r.error}" if r.error else ""))
    failed = [r for r in results.values() if r.status == "failed"]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{r.name} ({r.error})" for r in failed) + " — see ablation.log"]
    return "\n".join(lines) + "\n"


def write_tables(definition: AblationDefinition, rows: Sequence[int], results: Mapping[str, RunResult], out: Path,
                 note: str) -> tuple[Path, Path]:
    """Write ``out/ablation.csv`` and ``out/ablation.md`` atomically; return their paths."""
    columns, table = table_rows(definition, rows, results)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in table:
        writer.writerow([format(v, ".10g") if isinstance(v, float) and not math.isnan(v)
                         else "" if isinstance(v, float) else v for v in (row[c] for c in columns)])
    return (write_text_atomically(out / "ablation.csv", buf.getvalue()),
            write_text_atomically(out / "ablation.md", markdown(columns, table, results, note)))


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an ``ablation.csv``; figures and seconds as floats (NaN when blank)."""
    text_columns = {"pda", "pseudo_supervision", "run", "source_row", "status", "error"}
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v if k in text_columns else int(v) if k in ("row", "phase", "class_gate")
                 else float(v) if v else math.nan for k, v in r.items()} for r in csv.DictReader(f)]
