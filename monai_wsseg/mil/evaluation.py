"""Evaluation of tumor heatmaps against expert masks: the MIL bundle's ``evaluate.json`` component.

Paper A's protocol: choose the threshold on the validation split (here: the one maximising F1 over the
pooled tissue cells of the validation slides), then report on the test split, per slide and pooled,
the pixel AUC with background (every map cell with a prediction) and without background (tissue cells
only), and precision / recall / F1 / Dice at that threshold, broken down by ``location``.

Maps come from the given :class:`~monai_wsseg.inference.engine.WSIInferer`, or from ``maps_dir`` when it
holds ``<slide stem>.tif`` written by the inference bundle (:func:`~monai_wsseg.io.map_tiff.write_map_tiff`,
probability mode), so evaluation can reuse inference outputs. A slide that fails is logged, listed in
the report, and does not stop the others.

Bundle use (``evaluate.json``)::

    "evaluation": {
        "_target_": "monai_wsseg.mil.evaluation.TumorMapEvaluation",
        "inferer": "@inferer", "records": "@dataset_dir", "output_dir": "@output_dir",
        "maps_dir": "@maps_dir"
    },
    "run": ["$@evaluation.run()"]
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_wsseg.datasets.discovery import find_manifest_or_slides
from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.datasets.masks import mask_downsample
from monai_wsseg.datasets.roi import inside, roi_mask
from monai_wsseg.inference.cohort import check_writable
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.inference.report import REPORT_SUFFIX, read_slide_report, unread_cells
from monai_wsseg.metrics.tumor_maps import (
    TUMOR_FRACTION,
    TumorMapAccumulator,
    best_threshold,
    load_mask,
    mask_on_grid,
)
from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.wsi.slide import Slide, open_slide
from monai_wsseg.wsi.tissue import TissueMask, compute_tissue_mask, tissue_on_grid

__all__ = ["CSV_COLUMNS", "DEFAULT_THRESHOLD", "TumorMapEvaluation"]

logger = logging.getLogger(__name__)

#: Threshold used when the validation split cannot choose one (no slide with both classes).
DEFAULT_THRESHOLD = 0.5

#: Columns of ``evaluation.csv``. ``scope`` is ``slide`` (one test slide), ``pooled`` (all test slides),
#: ``location`` (test slides of one location) or ``validation`` (pooled validation slides).
CSV_COLUMNS: tuple[str, ...] = (
    "scope", "slide", "label", "location", "slides", "cells", "tumor_cells", "tissue_cells",
    "tumor_tissue_cells", "auc_with_background", "auc_without_background", "threshold",
    "tp", "fp", "fn", "tn", "precision", "recall", "f1", "dice", "error",
)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class TumorMapEvaluation:
    """Threshold on validation, figures on test, written as CSV and Markdown.

    Args:
        inferer: whole-slide inferer called as ``inferer(slide, tissue=tissue)`` → ``SlideMap``; may be
            ``None`` when ``maps_dir`` holds every map. Its ``plan`` (when it has one) also tells which
            cells of a stored map were computed, since TIFF maps store no-data as 0.
        records: manifest records, or a manifest CSV / dataset folder read with
            :func:`~monai_wsseg.datasets.discovery.find_manifest_or_slides` (default arguments, so slides
            without a split get the same seeded split as training with default settings).
        output_dir: folder for ``evaluation.csv`` and ``evaluation.md`` (created).
        val_split, test_split: manifest split names.
        backend: slide reading backend (``"auto"``, ``"openslide"``, ``"tifffile"``, ``"cucim"``).
        tissue_mpp: microns per pixel of the tissue mask that defines "without background" (and the
            tiles inferred); keep it equal to the inferer's ``tissue_mpp`` so stored maps line up.
        maps_dir: folder of ``<slide stem>.tif`` probability maps to reuse; slides without one are inferred.
        progress: show a progress bar over slides.
        threshold: a fixed threshold in ``[0, 1]``; ``None`` (default) chooses it on the validation split.
        channel: map channel holding the tumor probability.

    Slides used: label 0 (with or without a mask: without one every cell is normal) or label 1 with a
    mask; label-1 slides without a mask and unlabelled slides are listed as skipped.
    """

    def __init__(
        self,
        inferer: WSIInferer | Callable[..., Any] | None,
        records: Sequence[SlideRecord] | str | os.PathLike,
        output_dir: str | os.PathLike,
        *,
        val_split: str = "val",
        test_split: str = "test",
        backend: str = "auto",
        tissue_mpp: float = 8.0,
        maps_dir: str | os.PathLike | None = None,
        progress: bool = True,
        threshold: float | None = None,
        channel: int = 0,
    ) -> None:
        if isinstance(records, (str, os.PathLike)):
            records = find_manifest_or_slides(records)
        self.records: list[SlideRecord] = list(records)
        if not all(isinstance(r, SlideRecord) for r in self.records):
            raise ValueError("records must be SlideRecord objects, or a manifest / dataset folder path")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
            raise ValueError(f"threshold must be a number in [0, 1] or None, got {threshold!r}")
        if not (isinstance(tissue_mpp, (int, float)) and math.isfinite(tissue_mpp) and tissue_mpp > 0):
            raise ValueError(f"tissue_mpp must be a positive number of microns per pixel, got {tissue_mpp!r}")
        self.inferer = inferer
        self.output_dir = Path(output_dir)
        self.val_split, self.test_split = val_split, test_split
        self.backend, self.tissue_mpp = backend, float(tissue_mpp)
        self.maps_dir = Path(maps_dir) if maps_dir is not None else None
        self.progress, self.threshold, self.channel = progress, threshold, int(channel)

    # -- one slide ------------------------------------------------------------------------------------
    def _stored_map(self, slide: Slide, tissue: TissueMask) -> tuple[np.ndarray, int] | None:
        """``(scores, downsample)`` from ``maps_dir/<stem>.tif``, or ``None`` when there is none."""
        if self.maps_dir is None:
            return None
        path = self.maps_dir / f"{slide.path.stem}.tif"
        if not path.is_file():
            return None
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                image = tif.pages[0].asarray()
        except Exception as exc:
            raise ValueError(f"{path}: cannot read the stored map ({type(exc).__name__}: {_reason(exc)})") from None
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if image.ndim != 2:
            raise ValueError(f"{path}: a stored map must be one-channel (h, w), got shape {image.shape}")
        if image.dtype == np.uint8:
            scores = image.astype(np.float32) / np.float32(255.0)
        elif np.issubdtype(image.dtype, np.floating):
            scores = image.astype(np.float32)
        else:
            raise ValueError(f"{path}: a stored map must be uint8 probabilities (0-255), got {image.dtype}")
        h, w = scores.shape
        try:
            d = mask_downsample((w, h), slide.dimensions, mask_path=path, slide_path=slide.path)
        except ValueError as exc:
            raise ValueError(f"stored map {_reason(exc)}") from None
        computed = self._planned_cells(slide, tissue, d, (h, w))
        if computed is not None:
            scores[~computed] = np.nan
        report = path.with_suffix(REPORT_SUFFIX)
        if report.is_file():  # tiles that could not be read are stored as 0 too; the slide report names them
            scores[unread_cells(read_slide_report(report), d, (h, w))] = np.nan
        return scores, d

    def _planned_cells(self, slide: Slide, tissue: TissueMask, d: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Cells the inferer computes on ``slide``: the stored TIFF writes no-data as 0, so without this
        the glass outside the inferred tiles would enter the with-background AUC as confident normals."""
        plan_fn = getattr(self.inferer, "plan", None)
        if not callable(plan_fn):
            return None
        # run_cohort lets the inferer compute its own tissue mask; reuse ours only when it is the same one.
        same = getattr(self.inferer, "tissue_mpp", self.tissue_mpp) == self.tissue_mpp
        plan = plan_fn(slide, tissue if same else None)
        h, w = shape
        if plan.downsample != d or tuple(plan.map_size) != (w, h):
            warnings.warn(
                f"{slide.path}: the stored map ({w}x{h} cells at downsample {d}) does not match the inferer's "
                f"plan ({plan.map_size[0]}x{plan.map_size[1]} at {plan.downsample}); every cell counts as "
                "predicted (no-data stored as 0 counts as score 0)",
                stacklevel=3,
            )
            return None
        computed = np.zeros((h, w), bool)
        tc = plan.tile_cells
        for cx, cy in plan.cells.tolist():
            computed[cy : cy + tc, cx : cx + tc] = True
        return computed

    def _scores(self, slide: Slide, tissue: TissueMask) -> tuple[np.ndarray, int, str]:
        stored = self._stored_map(slide, tissue)
        if stored is not None:
            return stored[0], stored[1], "stored"
        if self.inferer is None:
            raise ValueError(f"{slide.path}: no stored map in {self.maps_dir} and no inferer to compute one")
        smap = self.inferer(slide, tissue=tissue)
        probs = np.asarray(smap.probabilities)
        if probs.ndim != 3 or not 0 <= self.channel < probs.shape[0]:
            raise ValueError(f"{slide.path}: the map has shape {probs.shape}; channel {self.channel} is not in it")
        if smap.unread:
            logger.warning("%s: %d unreadable windows are no-data in the map", slide.path, len(smap.unread))
        return probs[self.channel].astype(np.float32, copy=False), int(smap.downsample), "inferred"

    def evaluate_slide(self, record: SlideRecord) -> tuple[TumorMapAccumulator, str]:
        """Histograms of one slide and where its map came from (``"stored"`` or ``"inferred"``)."""
        with open_slide(record.slide, backend=self.backend) as slide:
            tissue = compute_tissue_mask(slide, mpp=self.tissue_mpp)
            if record.roi is not None:  # only the drawn regions count, in both AUCs
                roi = roi_mask(record.roi, slide.dimensions, tissue)
                tissue = inside(tissue, roi)
            scores, d, source = self._scores(slide, tissue)
            shape = scores.shape
            if record.roi is not None:
                scores = np.where(tissue_on_grid(roi, d, shape), scores, np.nan)
            if record.mask is not None:
                mask, mask_d = load_mask(record, slide.dimensions)
                truth = mask_on_grid(mask, mask_d, d, shape) >= TUMOR_FRACTION
            else:  # a normal slide without a mask: every cell is normal
                truth = np.zeros(shape, bool)
            tissue_cells = tissue_on_grid(tissue, d, shape)
        acc = TumorMapAccumulator()
        acc.update(scores, truth, tissue_cells)
        return acc, source

    # -- the run -------------------------------------------------------------------------------------
    def _usable(self, split: str, skipped: list[tuple[str, str]]) -> list[SlideRecord]:
        out = []
        for r in self.records:
            if r.split != split:
                continue
            if r.label is None:
                skipped.append((str(r.slide), "no slide label"))
            elif r.label == 1 and r.mask is None:
                skipped.append((str(r.slide), "tumor slide without an expert mask"))
            else:
                out.append(r)
        return out

    def _evaluate_all(
        self, records: Sequence[SlideRecord], failed: list[tuple[str, str]], desc: str
    ) -> list[tuple[SlideRecord, TumorMapAccumulator | None, str | None]]:
        results: list[tuple[SlideRecord, TumorMapAccumulator | None, str | None]] = []
        for record in _progress(records, self.progress, desc):
            try:
                acc, source = self.evaluate_slide(record)
                logger.info("%s: evaluated (%s map)", record.slide, source)
                results.append((record, acc, None))
            except Exception as exc:  # one bad slide must not end the evaluation; it is reported
                reason = _reason(exc)
                logger.error("%s: evaluation failed: %s", record.slide, reason)
                failed.append((str(record.slide), reason))
                results.append((record, None, reason))
        return results

    def run(self) -> dict[str, Any]:
        """Evaluate; write ``evaluation.csv`` and ``evaluation.md``; return the figures.

        Returns:
            ``{"threshold", "threshold_source", "validation": summary | None, "pooled": summary,
            "locations": {location: summary}, "slides": [row, ...], "failed": [(slide, reason)],
            "skipped": [(slide, reason)], "csv": path, "markdown": path}``; a summary holds the keys of
            :meth:`~monai_wsseg.metrics.tumor_maps.TumorMapAccumulator.summary`, a row those plus
            ``slide``, ``label``, ``location`` and ``error``.
        """
        out = check_writable(self.output_dir)
        failed: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []
        val_records = self._usable(self.val_split, skipped)
        test_records = self._usable(self.test_split, skipped)

        validation: dict | None = None
        if self.threshold is not None:
            threshold, source = float(self.threshold), "given"
        else:
            pooled_val = TumorMapAccumulator()
            for _, acc, _ in self._evaluate_all(val_records, failed, self.val_split):
                if acc is not None:
                    pooled_val.merge(acc)
            try:
                threshold = best_threshold(pooled_val)
                source = (f"best F1 on the tissue cells of {pooled_val.slides} pooled '{self.val_split}' "
                          "slide(s)")
            except ValueError as exc:
                threshold = DEFAULT_THRESHOLD
                source = f"default {DEFAULT_THRESHOLD}: the '{self.val_split}' split cannot choose one ({exc})"
                warnings.warn(f"threshold {source}", stacklevel=2)
                logger.warning("threshold %s", source)
            if pooled_val.slides:
                validation = pooled_val.summary(threshold)

        pooled = TumorMapAccumulator()
        by_location: dict[str, TumorMapAccumulator] = {}
        rows: list[dict[str, Any]] = []
        for record, acc, error in self._evaluate_all(test_records, failed, self.test_split):
            location = record.location or ""
            row: dict[str, Any] = {"slide": str(record.slide), "label": record.label, "location": location}
            if acc is None:
                row.update({"threshold": threshold, "error": error})
            else:
                pooled.merge(acc)
                by_location.setdefault(location, TumorMapAccumulator()).merge(acc)
                row.update(acc.summary(threshold))
                row["error"] = ""
            rows.append(row)

        result: dict[str, Any] = {
            "threshold": threshold,
            "threshold_source": source,
            "validation": validation,
            "pooled": pooled.summary(threshold),
            "locations": {loc: by_location[loc].summary(threshold) for loc in sorted(by_location)},
            "slides": rows,
            "failed": failed,
            "skipped": skipped,
        }
        result["csv"] = write_text_atomically(out / "evaluation.csv", _csv_text(result))
        result["markdown"] = write_text_atomically(out / "evaluation.md", _markdown(result, self))
        logger.info(
            "evaluation: %d test slides, pooled AUC %.4f (with background) / %.4f (tissue), F1 %.4f at %.4f; "
            "%d failed", len(rows) - sum(1 for r in rows if r["error"]), result["pooled"]["auc_with_background"],
            result["pooled"]["auc_without_background"], result["pooled"]["f1"], threshold, len(failed),
        )
        return result


# ---------------------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------------------
def _progress(items: Sequence, enabled: bool, desc: str) -> Iterable:
    if not enabled or not items:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=f"evaluate {desc}", unit="slide", leave=False)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else format(float(value), ".10g")
    return str(value)


def _csv_text(result: dict[str, Any]) -> str:
    """``evaluation.csv``: the rows of :data:`CSV_COLUMNS` (slides, pooled, locations, validation)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def emit(scope: str, fields: dict[str, Any]) -> None:
        writer.writerow([scope if c == "scope" else _csv_value(fields.get(c)) for c in CSV_COLUMNS])

    for row in result["slides"]:
        emit("slide", row)
    emit("pooled", {"location": "", **result["pooled"]})
    for loc, summary in result["locations"].items():
        emit("location", {"location": loc, **summary})
    if result["validation"] is not None:
        emit("validation", result["validation"])
    return buf.getvalue()


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{float(value):.{digits}f}"
    return str(value)


_MD_FIGURES = (
    ("AUC (with background)", "auc_with_background"), ("AUC (tissue only)", "auc_without_background"),
    ("precision", "precision"), ("recall", "recall"), ("F1", "f1"), ("Dice", "dice"),
)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _markdown(result: dict[str, Any], ev: TumorMapEvaluation) -> str:
    figures = [name for name, _ in _MD_FIGURES]
    counts = ["slides", "tissue cells", "tumor tissue cells"]

    def summary_row(name: str, s: dict[str, Any]) -> list[str]:
        return [name, str(s["slides"]), str(s["tissue_cells"]), str(s["tumor_tissue_cells"])] + [
            _fmt(s[key]) for _, key in _MD_FIGURES
        ]

    lines = [
        "# Tumor map evaluation",
        "",
        f"Threshold **{result['threshold']:.4f}** ({result['threshold_source']}). A cell is tumor when at least "
        f"{TUMOR_FRACTION:g} of it is tumor in the expert mask and tissue likewise for the tissue mask "
        f"(computed at {ev.tissue_mpp:g} µm/px). *With background* counts every map cell with a prediction; "
        "*tissue only* counts tissue cells. Precision, recall, F1 and Dice are on tissue cells at the "
        "threshold (pixel Dice equals F1). Scores are quantised to 256 levels. AUC is n/a where a slide "
        "has a single class (e.g. a normal slide); such slides still count in the pooled figures.",
        "",
        f"## Pooled ('{ev.test_split}' split)",
        "",
    ]
    pooled_rows = [summary_row(f"all {ev.test_split} slides", result["pooled"])]
    if result["validation"] is not None:
        pooled_rows.append(summary_row(f"'{ev.val_split}' slides (threshold chosen here)", result["validation"]))
    lines += _table(["set", *counts, *figures], pooled_rows)
    lines += ["", "## By location", ""]
    lines += _table(
        ["location", *counts, *figures],
        [summary_row(loc or "(none)", s) for loc, s in result["locations"].items()],
    )
    lines += ["", "## Per slide", ""]
    slide_rows = []
    for row in result["slides"]:
        name = Path(row["slide"]).name
        if row.get("error"):
            slide_rows.append([name, str(row["label"]), row["location"] or "(none)", "", ""]
                              + ["failed"] * len(figures))
        else:
            slide_rows.append([name, str(row["label"]), row["location"] or "(none)", str(row["tissue_cells"]),
                               str(row["tumor_tissue_cells"])] + [_fmt(row[key]) for _, key in _MD_FIGURES])
    lines += _table(["slide", "label", "location", "tissue cells", "tumor tissue cells", *figures], slide_rows)
    if result["failed"]:
        lines += ["", "## Failed slides", ""]
        lines += [f"- `{slide}`: {reason}" for slide, reason in result["failed"]]
    if result["skipped"]:
        lines += ["", "## Skipped slides", ""]
        lines += [f"- `{slide}`: {reason}" for slide, reason in result["skipped"]]
    return "\n".join(lines) + "\n"
