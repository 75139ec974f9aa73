"""Cohort inference: many slides in, one set of map outputs per slide out; resumable and shardable.

Per slide, in the output folder: ``<stem>.tif`` (the map as a pyramidal TIFF), ``<stem>.png`` (the map
over the slide thumbnail), ``<stem>.geojson`` (the regions of each class) and ``<stem>.json`` (the slide
report: regions whose tiles could not be read, no tissue; see :mod:`monai_wsseg.inference.report`),
written last. Every file is written to
a temporary name and renamed when complete, so after a kill no partial file exists under a final name,
and a rerun skips the slides whose outputs all exist. A slide that cannot be read or inferred is
logged, listed at the end, and does not stop the others; the run then raises :class:`CohortError`
unless ``tolerate_failures``. Under ``torchrun`` (or any launcher setting ``RANK``/``WORLD_SIZE``)
each rank takes every ``WORLD_SIZE``-th slide, so many GPUs and nodes need no other code.

That loop is :class:`CohortRun`, run whole by :func:`run_cohort` and one slide per Ignite iteration by the
bundles' :class:`~monai_wsseg.inference.evaluator.CohortEvaluator`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from monai_wsseg.datasets.discovery import SLIDE_EXTENSIONS, find_manifest_or_slides, find_slide_files
from monai_wsseg.datasets.manifest import MANIFEST_NAME, SlideRecord
from monai_wsseg.datasets.roi import restrict_to_roi
from monai_wsseg.errors import ExpectedError
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.inference.report import slide_report, write_slide_report
from monai_wsseg.io import write_geojson, write_map_tiff, write_overlay_png
from monai_wsseg.utils.output_dir import check_output_dir
from monai_wsseg.wsi.dicom import DICOM_EXTENSIONS
from monai_wsseg.wsi.slide import open_slide
from monai_wsseg.wsi.tissue import compute_tissue_mask, tissue_on_grid

__all__ = ["CohortError", "CohortResult", "CohortRun", "MapOutputs", "check_stems", "check_writable", "cohort_slides",
           "failure_reason", "run_cohort", "shard", "write_slide_outputs"]

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = {"tiff": ".tif", "png": ".png", "geojson": ".geojson", "report": ".json"}


class CohortError(ExpectedError, RuntimeError):
    """Some slides of a cohort failed; the message lists each with its reason."""


@dataclass
class CohortResult:
    """What a cohort run did, slide by slide (paths as given)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class MapOutputs:
    """Which outputs to write and how to draw them.

    Attributes:
        class_names: one name per network output channel (e.g. ``["tumor"]``).
        colors: one ``(r, g, b)`` per class; ``None`` picks defaults.
        label_map: write the TIFF as class indices (argmax) rather than the probability of ``channel``.
        channel: the channel written as probability (single-class maps use 0).
        threshold: cut for GeoJSON regions and label maps of one channel.
        formats: any of ``"tiff"``, ``"png"``, ``"geojson"``, ``"report"`` (the slide report, which tells
            no-data cells from probability 0 in the TIFF).
    """

    class_names: Sequence[str] = ("tumor",)
    colors: Sequence[Sequence[int]] | None = None
    label_map: bool = False
    channel: int = 0
    threshold: float = 0.5
    formats: Sequence[str] = ("tiff", "png", "geojson", "report")

    def paths(self, output_dir: Path, slide: Path) -> dict[str, Path]:
        """The output file of each format for ``slide``: ``output_dir/<slide stem><suffix>``."""
        unknown = set(self.formats) - set(OUTPUT_SUFFIXES)
        if unknown:
            raise ValueError(f"unknown output formats {sorted(unknown)}; choose from {sorted(OUTPUT_SUFFIXES)}")
        return {f: output_dir / f"{slide.stem}{OUTPUT_SUFFIXES[f]}" for f in self.formats}


def shard(items: Sequence, rank: int | None = None, world_size: int | None = None) -> list:
    """This process's share of ``items``: every ``world_size``-th item from ``rank``.

    Without arguments, rank and world size come from ``torch.distributed`` when it is initialised, else
    from the ``RANK``/``WORLD_SIZE`` environment variables, else the whole list.
    """
    if rank is None or world_size is None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    return list(items)[rank::world_size]


def cohort_records(source: str | os.PathLike, split: str | None = None) -> list[SlideRecord]:
    """The slides to infer from a slide file, a manifest CSV, a folder holding ``manifest.csv``, or a folder
    of slides (labels are not needed for inference), as records (a manifest's ``roi`` kept); ``split``
    keeps only that manifest split."""
    src = Path(source)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such slide, manifest or folder")
    if src.is_file() and src.suffix.lower() in SLIDE_EXTENSIONS + DICOM_EXTENSIONS:
        found = [src]
    elif src.is_dir() and not (src / MANIFEST_NAME).exists():
        found = find_slide_files(src)
        if not found:
            kinds = ", ".join(SLIDE_EXTENSIONS + DICOM_EXTENSIONS)
            raise FileNotFoundError(f"{src}: holds no manifest.csv and no slide files ({kinds})")
    else:
        records = find_manifest_or_slides(src, require_labels=False, assign_splits=False)
        return [r for r in records if split is None or r.split == split]
    return [SlideRecord(p, None, None, None, p.stem) for p in found]


def cohort_slides(source: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The slide paths of :func:`cohort_records`."""
    return [r.slide for r in cohort_records(source, split)]


def check_writable(output_dir: str | os.PathLike) -> Path:
    """Create ``output_dir`` and prove it takes a file and has room, before any hour of work
    (:class:`~monai_wsseg.utils.output_dir.OutputDirError` otherwise;
    see :func:`~monai_wsseg.utils.output_dir.check_output_dir`)."""
    return check_output_dir(output_dir)


def failure_reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for failure lists."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def write_slide_outputs(inferer: WSIInferer, path: Path, targets: dict[str, Path], outputs: MapOutputs, *,
                        backend: str = "auto", mpp: float | None = None, roi: Path | None = None) -> None:
    """Infer one slide (only the tissue inside ``roi``'s regions when given, see
    :func:`~monai_wsseg.datasets.roi.restrict_to_roi`) and write the outputs named in ``targets``
    (``MapOutputs.paths``); raises on failure."""
    with open_slide(path, backend=backend, mpp=mpp) as slide:
        tissue = restrict_to_roi(compute_tissue_mask(slide, mpp=inferer.tissue_mpp), roi, slide.dimensions)
        smap = inferer(slide, tissue=tissue)
        if "tiff" in targets:
            write_map_tiff(targets["tiff"], smap, channel=None if outputs.label_map else outputs.channel,
                           label_map=outputs.label_map, threshold=outputs.threshold)
        names, colors = list(outputs.class_names), outputs.colors
        if "png" in targets:
            # Tiles reach into the glass around the tissue; colour only the tissue in the picture.
            cells = tissue_on_grid(tissue, smap.downsample, smap.probabilities.shape[1:])
            shown = replace(smap, probabilities=np.where(cells, smap.probabilities, np.nan))
            write_overlay_png(targets["png"], shown, slide, class_names=names, colors=colors)
        if "geojson" in targets:
            write_geojson(targets["geojson"], smap, class_names=names, colors=colors,
                          threshold=outputs.threshold, slide_dimensions=slide.dimensions)
    if "report" in targets:
        write_slide_report(targets["report"], slide_report(smap, slide.dimensions, inferer.precision.name))
    if smap.unread:
        logger.warning("%s: %d unreadable windows are no-data in the maps", path, len(smap.unread))


def check_stems(output_dir: Path, paths: Sequence[Path]) -> None:
    """Refuse slides that share a file stem: their outputs would overwrite each other."""
    stems = [p.stem for p in paths]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(
            f"{output_dir}: several slides share the file stem(s) {clashes[:5]}; their outputs would collide"
        )


class CohortRun:
    """The per-slide loop of a cohort run, written once for :func:`run_cohort` and for the bundles'
    :class:`~monai_wsseg.inference.evaluator.CohortEvaluator` (which calls it one slide per Ignite iteration).

    :meth:`start` checks the output folder, refuses slides sharing a file stem and takes this rank's shard;
    :meth:`infer_slide` skips a slide whose outputs all exist, else infers it and writes its outputs, and
    logs and records a failure without raising; :meth:`finish` logs the counts and raises
    :class:`CohortError` listing the failures unless ``tolerate_failures``. :meth:`run` does all three.

    Args:
        inferer: the configured whole-slide inferer.
        output_dir: folder for the outputs (created; checked writable first).
        outputs: what to write (default: tumor probability TIFF, overlay PNG, GeoJSON and slide report).
        backend: slide reading backend.
        mpp: level-0 microns per pixel for slides whose files record none.
        tolerate_failures: finish normally even when slides failed (they are still listed).
    """

    def __init__(self, inferer: WSIInferer, output_dir: str | os.PathLike, outputs: MapOutputs | None = None, *,
                 backend: str = "auto", mpp: float | None = None, tolerate_failures: bool = False) -> None:
        self.inferer, self.output_dir = inferer, Path(output_dir)
        self.outputs = outputs or MapOutputs()
        self.backend, self.mpp, self.tolerate_failures = backend, mpp, tolerate_failures
        self.slides: list[Path] = []
        self.rois: dict[Path, Path] = {}
        self.result = CohortResult()

    def start(self, slides: Sequence[str | os.PathLike | SlideRecord], rank: int | None = None,
              world_size: int | None = None) -> list[Path]:
        """Check the output folder, refuse shared stems (before any work) and return this rank's slides
        (see :func:`shard`); the result starts empty.

        Raises:
            ValueError: the output folder is not writable, or slides share a file stem.
        """
        self.output_dir = check_writable(self.output_dir)
        paths = [Path(s.slide if isinstance(s, SlideRecord) else s) for s in slides]
        self.rois = {Path(s.slide): s.roi for s in slides if isinstance(s, SlideRecord) and s.roi is not None}
        check_stems(self.output_dir, paths)
        self.slides = shard(paths, rank, world_size)
        self.result = CohortResult()
        return self.slides

    def infer_slide(self, path: str | os.PathLike, position: int | None = None,
                    roi: str | os.PathLike | None = None) -> str:
        """Infer one slide of the shard and write its outputs, unless they all exist already.

        Args:
            path: the slide.
            position: its 1-based place in the shard, for the log.
            roi: GeoJSON of the regions to keep to (default: the record's ``roi`` given to :meth:`start`).

        Returns:
            ``"done"``, ``"skipped"`` (outputs exist) or ``"failed"`` (logged and recorded in :attr:`result`,
            not raised: one bad slide must not end a cohort).
        """
        path = Path(path)
        targets = self.outputs.paths(self.output_dir, path)
        if all(t.exists() for t in targets.values()):
            self.result.skipped.append(str(path))
            return "skipped"
        logger.info("[%s/%d] %s", "?" if position is None else position, len(self.slides), path)
        try:
            write_slide_outputs(self.inferer, path, targets, self.outputs, backend=self.backend, mpp=self.mpp,
                                roi=Path(roi) if roi is not None else self.rois.get(path))
        except Exception as exc:  # one bad slide must not end a cohort; it is reported by finish()
            reason = failure_reason(exc)
            logger.error("%s: failed: %s", path, reason)
            self.result.failed.append((str(path), reason))
            return "failed"
        self.result.done.append(str(path))
        return "done"

    def finish(self) -> CohortResult:
        """Log what the run did and return its :class:`CohortResult`.

        Raises:
            CohortError: some slides failed and failures are not tolerated; the message lists each with its
                reason.
        """
        result = self.result
        logger.info("%d slides done, %d skipped (outputs exist), %d failed", len(result.done), len(result.skipped),
                    len(result.failed))
        if result.failed and not self.tolerate_failures:
            lines = "\n".join(f"  {p}: {r}" for p, r in result.failed)
            raise CohortError(f"{len(result.failed)} of {len(self.slides)} slides failed:\n{lines}")
        return result

    def run(self, slides: Sequence[str | os.PathLike | SlideRecord], rank: int | None = None,
            world_size: int | None = None) -> CohortResult:
        """:meth:`start`, :meth:`infer_slide` for each slide of this rank's shard, :meth:`finish`."""
        for i, path in enumerate(self.start(slides, rank, world_size), 1):
            self.infer_slide(path, i)
        return self.finish()


def run_cohort(
    inferer: WSIInferer,
    slides: Sequence[str | os.PathLike | SlideRecord],
    output_dir: str | os.PathLike,
    outputs: MapOutputs | None = None,
    *,
    backend: str = "auto",
    mpp: float | None = None,
    tolerate_failures: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
) -> CohortResult:
    """Infer every slide of this rank's shard and write its outputs (a :class:`CohortRun`).

    Args:
        inferer: the configured whole-slide inferer.
        slides: slide paths or manifest records.
        output_dir: folder for the outputs (created; checked writable first).
        outputs: what to write (default: tumor probability TIFF, overlay PNG, GeoJSON and slide report).
        backend: slide reading backend.
        mpp: level-0 microns per pixel for slides whose files record none.
        tolerate_failures: return normally even when slides failed (they are still listed).
        rank, world_size: shard explicitly (default: from the launcher, see :func:`shard`).

    Raises:
        ValueError: the output folder is not writable, or slides share a file stem.
        CohortError: at the end, when any slide failed and failures are not tolerated.
    """
    run = CohortRun(inferer, output_dir, outputs, backend=backend, mpp=mpp, tolerate_failures=tolerate_failures)
    return run.run(slides, rank, world_size)
