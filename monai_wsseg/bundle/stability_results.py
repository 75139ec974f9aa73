"""One seed's outcome in a stability study (:class:`SeedResult`), judged against the floors
(:func:`check_floors`), the training and evaluation outputs its figures are read from
(``validation.csv``, ``evaluation.csv``), and what a kind of study reports (:class:`FigureSpec`; the MIL
bundle's is :data:`MIL_SPEC`). No torch / monai needed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_wsseg.bundle.runs import one_line
from monai_wsseg.bundle.stability_protocol import FloorsBase

__all__ = [
    "AUC_COLUMN", "FIGURES", "KEY_METRIC", "LABEL_METRIC", "MIL_SPEC", "FigureSpec", "SeedResult", "StabilityResults",
    "check_floors", "curve_figures", "merge_curves", "nan_float", "pooled_row", "read_pooled", "read_validation_curve",
]

logger = logging.getLogger(__name__)

#: Per-seed figures, in table order.
FIGURES: tuple[str, ...] = (
    "kept_test_auc", "last_test_auc", "label_test_auc", "selection_gap", "lab2_auc",
    "best_epoch", "min_val_after_warmup", "final_val",
)

#: Validation metric that chooses ``model.pt``, and the one from slide labels that chooses ``model_label.pt``.
KEY_METRIC = "val_auc"
LABEL_METRIC = "val_label_score"

#: Column of ``evaluation.csv`` that is the judged AUC: pooled over the tissue cells of the test slides.
AUC_COLUMN = "auc_without_background"


def _nan_figures(names: Sequence[str] = FIGURES) -> dict[str, float]:
    return {k: math.nan for k in names}


@dataclass(frozen=True)
class FigureSpec:
    """What a kind of stability study reports per seed, and how its tables and figure name it.

    Attributes:
        figures: per-seed figures, in the order of ``stability.csv``'s columns.
        titles: a column title per figure; ``{warmup}`` stands for the floors' warm-up.
        key_metric: the validation metric that chose the kept checkpoint (its panel comes first, with the
            kept epoch starred and the ``min_val_after_warmup`` floor drawn).
        headline: the figure each seed's progress line gives.
        description: ``stability.md``'s paragraph on what the figures are.
        shown: the figures ``stability.md`` tabulates (default: all).
        panels: validation metrics drawn first, in this order (the others follow by name).
        epoch_figures: figures that count epochs (written as integers).
    """

    figures: tuple[str, ...]
    titles: Mapping[str, str]
    key_metric: str
    headline: str
    description: str
    shown: tuple[str, ...] | None = None
    panels: tuple[str, ...] = ()
    epoch_figures: frozenset[str] = frozenset({"best_epoch"})

    def title(self, figure: str, floors: FloorsBase) -> str:
        """The table title of ``figure``, with the floors' warm-up filled in."""
        return self.titles[figure].format(warmup=floors.warmup)


#: The MIL bundle's study: pixel AUCs of three checkpoints, the second lab, and the ``val_auc`` curve.
MIL_SPEC = FigureSpec(
    figures=FIGURES,
    titles={"kept_test_auc": "kept test AUC", "last_test_auc": "last-epoch test AUC",
            "label_test_auc": "label-chosen test AUC", "selection_gap": "selection gap",
            "lab2_auc": "lab 2 AUC", "best_epoch": "best epoch",
            "min_val_after_warmup": "min val AUC after epoch {warmup}", "final_val": "final val AUC"},
    key_metric=KEY_METRIC,
    headline="kept_test_auc",
    description="Test AUC: pixel AUC pooled over the tissue cells of the test slides. *kept*: `model.pt` (best "
                "`val_auc`, masks); *last-epoch*: the last checkpoint; *label-chosen*: `model_label.pt` (best "
                "`val_label_score`, slide labels only); *selection gap*: |kept − label-chosen|; *lab 2*: the kept "
                "checkpoint on the second lab's cohort. Blank: not available.",
    panels=(KEY_METRIC, LABEL_METRIC),
)


@dataclass
class SeedResult:
    """One seed's outcome; figures are NaN when missing.

    ``curve`` is the validation curve, ``{"epoch": [...], metric: [...]}``; ``notes`` says what was not
    evaluated and why. ``violations`` and ``unchecked`` are filled by :func:`check_floors` (not stored).
    """

    seed: int
    status: str = "pending"  # "done" (run now), "resumed" (read back), "failed"
    error: str = ""
    figures: dict[str, float] = field(default_factory=_nan_figures)
    curve: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    train_seconds: float = math.nan
    eval_seconds: float = math.nan
    settings: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> float:
        """Validation epochs in the curve; NaN without one (blank in the tables, not 0)."""
        return float(len(self.curve["epoch"])) if self.curve.get("epoch") else math.nan

    def verdict(self) -> str:
        """``pass``, ``failed: <error>`` or ``below floor: <violations>``."""
        if self.status == "failed":
            return f"failed: {self.error}"
        if self.violations:
            return "below floor: " + "; ".join(self.violations)
        return "pass"

    def note(self, text: str, *, warn: bool = True) -> None:
        """Say what was not evaluated and why: kept in ``notes`` (``stability.md``) and logged."""
        self.notes.append(text)
        (logger.warning if warn else logger.info)("seed %d: %s", self.seed, text)

    def to_json(self) -> str:
        """The ``result.json`` text (NaN as ``null``) that :meth:`from_json` reads back."""
        data = {"seed": self.seed, "figures": {k: _json_number(v) for k, v in self.figures.items()},
                "curve": {k: [_json_number(x) for x in v] for k, v in self.curve.items()}, "notes": self.notes,
                "train_seconds": _json_number(self.train_seconds), "eval_seconds": _json_number(self.eval_seconds),
                "settings": self.settings}
        return json.dumps(data, indent=2, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, names: Sequence[str] = FIGURES) -> SeedResult:
        """The result a ``result.json`` holds, status ``resumed``; ``names``: the study's figures (others are
        dropped, missing ones NaN).

        Raises:
            ValueError: not a result file.
        """
        try:
            data = json.loads(text)
            figures = _nan_figures(names)
            figures.update({k: nan_float(v) for k, v in data["figures"].items() if k in figures})
            return cls(seed=int(data["seed"]), status="resumed", figures=figures,
                       curve={k: [nan_float(x) for x in v] for k, v in data.get("curve", {}).items()},
                       notes=[str(n) for n in data.get("notes", [])],
                       train_seconds=nan_float(data.get("train_seconds")),
                       eval_seconds=nan_float(data.get("eval_seconds")),
                       settings=dict(data.get("settings", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a stability result ({one_line(exc)})") from None


def _json_number(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v  # JSON has no NaN


def nan_float(v: Any) -> float:
    """A table cell or JSON value as a float: blank or ``None`` is NaN."""
    if v is None or v == "":
        return math.nan
    return float(v)


def read_validation_curve(path: str | os.PathLike) -> dict[str, list[float]]:
    """``validation.csv`` → ``{"epoch": [...], metric: [...]}`` sorted by epoch; blank cells are NaN.

    An epoch listed twice (a resumed training repeating one) keeps its last row.

    Raises:
        ValueError: no ``epoch`` column.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "epoch" not in reader.fieldnames:
            raise ValueError(f"{path}: no 'epoch' column")
        metrics = [c for c in reader.fieldnames if c != "epoch"]
        by_epoch: dict[int, dict[str, float]] = {}
        for row in reader:
            values: dict[str, float] = {}
            for c in metrics:
                try:
                    values[c] = nan_float(row.get(c))
                except ValueError:  # a non-numeric column (a note): not a curve
                    values[c] = math.nan
            by_epoch[int(float(row["epoch"]))] = values
    epochs = sorted(by_epoch)
    curve: dict[str, list[float]] = {"epoch": [float(e) for e in epochs]}
    for c in metrics:
        curve[c] = [by_epoch[e][c] for e in epochs]
    return curve


def curve_figures(curve: Mapping[str, Sequence[float]], warmup: int, key: str = KEY_METRIC) -> dict[str, float]:
    """``best_epoch`` (first epoch of the highest ``key`` metric, the one ``model.pt`` holds: the saver
    replaces it on a strict improvement only), ``min_val_after_warmup`` (over epochs > ``warmup``) and
    ``final_val``; NaN where the curve cannot tell (undefined epochs are left out)."""
    out = {"best_epoch": math.nan, "min_val_after_warmup": math.nan, "final_val": math.nan}
    epochs, values = list(curve.get("epoch", [])), list(curve.get(key, []))
    if not epochs or len(values) != len(epochs):
        return out
    known = [(e, v) for e, v in zip(epochs, values, strict=True) if not math.isnan(v)]
    if known:
        best = max(v for _, v in known)
        out["best_epoch"] = next(e for e, v in known if v == best)
    after = [v for e, v in known if e > warmup]
    if after:
        out["min_val_after_warmup"] = min(after)
    out["final_val"] = values[-1]
    return out


def merge_curves(*curves: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Validation curves of several trainings (e.g. two phases) on one epoch axis: ``{"epoch": [...], metric:
    [...]}`` with NaN where a training did not validate that epoch. Metric names must differ between curves."""
    epochs = sorted({e for c in curves for e in c.get("epoch", [])})
    merged: dict[str, list[float]] = {"epoch": [float(e) for e in epochs]}
    for c in curves:
        for metric, values in c.items():
            if metric != "epoch":
                at = dict(zip(c["epoch"], values, strict=True))
                merged[metric] = [at.get(e, math.nan) for e in epochs]
    return merged


def pooled_row(path: str | os.PathLike) -> dict[str, str]:
    """The ``pooled`` row of the MIL bundle's ``evaluation.csv`` (``TumorMapEvaluation``), cells as text.

    Raises:
        ValueError: the file has no pooled row.
    """
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("scope") == "pooled":
                return row
    raise ValueError(f"{path}: no 'pooled' row")


def read_pooled(path: str | os.PathLike) -> tuple[float, float]:
    """``(test AUC over tissue cells, threshold)`` of the ``pooled`` row of an ``evaluation.csv``.

    Raises:
        ValueError: the file has no pooled row.
    """
    row = pooled_row(path)
    return nan_float(row.get(AUC_COLUMN)), nan_float(row.get("threshold"))


def check_floors(result: SeedResult, floors: FloorsBase) -> SeedResult:
    """Fill ``result.violations`` (``"kept_test_auc 0.9123 < 0.95"``) and ``result.unchecked`` (floors
    whose figure is missing, e.g. no epoch after warm-up); a failed seed is judged by its status alone."""
    result.violations, result.unchecked = [], []
    if result.status == "failed":
        return result
    for _, figure, op, limit in floors.rules():
        value = result.figures.get(figure, math.nan)
        if math.isnan(value):
            result.unchecked.append(figure)
        elif (op == "≥" and value < limit) or (op == "≤" and value > limit):
            result.violations.append(f"{figure} {value:.4f} {'<' if op == '≥' else '>'} {limit:g}")
    return result


@dataclass
class StabilityResults:
    """Every seed's outcome, judged, and the files written."""

    seeds: list[SeedResult]
    floors: FloorsBase
    csv: Path | None = None
    markdown: Path | None = None
    plot: Path | None = None
    spec: FigureSpec = MIL_SPEC

    @property
    def failed(self) -> list[SeedResult]:
        """Seeds that raised (training or evaluation)."""
        return [r for r in self.seeds if r.status == "failed"]

    @property
    def below_floor(self) -> list[SeedResult]:
        """The seeds that ran but missed at least one floor."""
        return [r for r in self.seeds if r.violations]

    @property
    def passed(self) -> bool:
        """Every seed ran and cleared every floor."""
        return not self.failed and not self.below_floor
