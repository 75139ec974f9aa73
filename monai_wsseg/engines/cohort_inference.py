"""Cohort inference as an Ignite engine: the ``dataset`` / ``evaluator`` pair the model zoo expects of an
inference bundle.

One iteration is one slide: it is inferred and its outputs are written (see
:func:`~monai_wsseg.inference.cohort.write_slide_outputs`), or skipped when they all exist. Being an
engine, the run takes handlers like any MONAI evaluator (a slide progress bar by default; ``StatsHandler``
or ``MLFlowHandler`` through ``val_handlers``). Semantics match
:func:`~monai_wsseg.inference.cohort.run_cohort`: a failing slide is logged and listed and does not stop
the others; the run then raises :class:`~monai_wsseg.inference.cohort.CohortError` unless
``tolerate_failures``; under a launcher each rank takes every ``WORLD_SIZE``-th slide.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from monai_wsseg.inference.cohort import (
    CohortError,
    CohortResult,
    MapOutputs,
    check_stems,
    check_writable,
    cohort_slides,
    failure_reason,
    shard,
    write_slide_outputs,
)
from monai_wsseg.inference.engine import WSIInferer

__all__ = ["CohortEvaluator", "patch_dataset", "slide_dataset"]

logger = logging.getLogger(__name__)


def slide_dataset(source: str | os.PathLike, split: str | None = None):
    """A MONAI ``Dataset`` of ``{"image": path}`` items, one per slide of ``source`` (a slide, a manifest,
    a folder with ``manifest.csv`` or a folder of slides; see :func:`~monai_wsseg.inference.cohort.cohort_slides`)."""
    from monai.data import Dataset

    return Dataset(data=[{"image": str(p)} for p in cohort_slides(source, split)])


class CohortEvaluator(Engine):
    """Infer every slide of ``dataset`` with ``inferer`` and write its maps to ``output_dir``.

    Args:
        inferer: the configured whole-slide inferer.
        dataset: items ``{"image": slide path}`` (e.g. :func:`slide_dataset`).
        output_dir: folder for ``<stem>.tif`` / ``.png`` / ``.geojson`` (created, checked writable).
        outputs: what to write (default: probability TIFF, overlay PNG and GeoJSON).
        backend: slide reading backend.
        mpp: level-0 microns per pixel for slides whose files record none.
        tolerate_failures: end normally even when slides failed (they are still listed).
        val_handlers: Ignite handlers attached to this engine (``attach(engine)``).
        progress: show a progress bar over slides.

    ``state.result`` holds the :class:`~monai_wsseg.inference.cohort.CohortResult` after :meth:`run`.
    """

    def __init__(self, inferer: WSIInferer, dataset: Sequence[dict], output_dir: str | os.PathLike,
                 outputs: MapOutputs | None = None, *, backend: str = "auto", mpp: float | None = None,
                 tolerate_failures: bool = False, val_handlers: Sequence[Any] | None = None,
                 progress: bool = True) -> None:
        super().__init__(self._infer)
        self.inferer, self.dataset, self.output_dir = inferer, dataset, Path(output_dir)
        self.outputs = outputs or MapOutputs()
        self.backend, self.mpp, self.tolerate_failures = backend, mpp, tolerate_failures
        self.state.result = CohortResult()
        if progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=True, desc="slides").attach(self)
        for handler in val_handlers or ():
            handler.attach(self)
        self.add_event_handler(Events.COMPLETED, self._report)

    def _infer(self, engine: Engine, item: dict) -> dict:
        path = Path(item["image"])
        targets = self.outputs.paths(self.output_dir, path)
        result: CohortResult = engine.state.result
        if all(t.exists() for t in targets.values()):
            result.skipped.append(str(path))
            return {"slide": str(path), "status": "skipped"}
        logger.info("[%d/%d] %s", engine.state.iteration, engine.state.epoch_length, path)
        try:
            write_slide_outputs(self.inferer, path, targets, self.outputs, backend=self.backend, mpp=self.mpp)
        except Exception as exc:  # one bad slide must not end a cohort; it is reported at the end
            reason = failure_reason(exc)
            logger.error("%s: failed: %s", path, reason)
            result.failed.append((str(path), reason))
            return {"slide": str(path), "status": "failed"}
        result.done.append(str(path))
        return {"slide": str(path), "status": "done"}

    def _report(self, engine: Engine) -> None:
        result: CohortResult = engine.state.result
        logger.info("%d slides done, %d skipped (outputs exist), %d failed", len(result.done), len(result.skipped),
                    len(result.failed))

    def run(self, data: Sequence[dict] | None = None, max_epochs: int = 1, **kwargs: Any) -> CohortResult:
        """Infer this rank's share of ``data`` (default: ``dataset``) once; returns the cohort result."""
        items = list(self.dataset if data is None else data)
        check_writable(self.output_dir)
        check_stems(self.output_dir, [Path(i["image"]) for i in items])
        mine = shard(items)
        self.state.result = CohortResult()
        if mine:
            super().run(mine, max_epochs=max_epochs, **kwargs)
        else:
            logger.info("no slides to infer on this rank")
        result: CohortResult = self.state.result
        if result.failed and not self.tolerate_failures:
            lines = "\n".join(f"  {p}: {r}" for p, r in result.failed)
            raise CohortError(f"{len(result.failed)} of {len(mine)} slides failed:\n{lines}")
        return result


def patch_dataset(folder: str | os.PathLike):
    """A MONAI ``Dataset`` of ``{"image": path}`` items, one per ``*.png`` patch of ``folder`` (sorted)."""
    from monai.data import Dataset

    return Dataset(data=[{"image": str(p)} for p in sorted(Path(folder).glob("*.png"))])
