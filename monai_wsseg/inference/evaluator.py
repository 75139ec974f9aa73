"""Cohort inference as an Ignite engine: the ``dataset`` / ``evaluator`` pair the model zoo expects of an
inference bundle.

One iteration is one slide: :meth:`CohortRun.infer_slide <monai_wsseg.inference.cohort.CohortRun.infer_slide>`
infers it and writes its outputs, or skips it when they all exist. The loop's rules are
:class:`~monai_wsseg.inference.cohort.CohortRun`'s, the same as :func:`~monai_wsseg.inference.cohort.run_cohort`'s:
a failing slide is logged and listed and does not stop the others; the run then raises
:class:`~monai_wsseg.inference.cohort.CohortError` unless ``tolerate_failures``; under a launcher each rank
takes every ``WORLD_SIZE``-th slide. Being an engine, the run takes handlers like any MONAI evaluator (a
slide progress bar by default; ``StatsHandler`` or ``MLFlowHandler`` through ``val_handlers``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine

from monai_wsseg.inference.cohort import CohortResult, CohortRun, MapOutputs, cohort_records
from monai_wsseg.inference.engine import WSIInferer

__all__ = ["CohortEvaluator", "patch_dataset", "slide_dataset"]

logger = logging.getLogger(__name__)


def slide_dataset(source: str | os.PathLike, split: str | None = None):
    """A MONAI ``Dataset`` of ``{"image": path}`` items (with ``"roi"`` when the manifest gives one), one per
    slide of ``source`` (a slide, a manifest, a folder with ``manifest.csv`` or a folder of slides; see
    :func:`~monai_wsseg.inference.cohort.cohort_records`)."""
    from monai.data import Dataset

    items = [{"image": str(r.slide)} | ({"roi": str(r.roi)} if r.roi else {}) for r in cohort_records(source, split)]
    return Dataset(data=items)


def patch_dataset(folder: str | os.PathLike):
    """A MONAI ``Dataset`` of ``{"image": path}`` items, one per ``*.png`` patch of ``folder`` (sorted)."""
    from monai.data import Dataset

    return Dataset(data=[{"image": str(p)} for p in sorted(Path(folder).glob("*.png"))])


class CohortEvaluator(Engine):
    """Infer every slide of ``dataset`` with ``inferer`` and write its maps to ``output_dir``.

    Args:
        inferer: the configured whole-slide inferer.
        dataset: items ``{"image": slide path}`` (e.g. :func:`slide_dataset`).
        output_dir: folder for ``<stem>.tif`` / ``.png`` / ``.geojson`` / ``.json`` (created, checked writable).
        outputs: what to write (default: probability TIFF, overlay PNG, GeoJSON and slide report).
        backend: slide reading backend.
        mpp: level-0 microns per pixel for slides whose files record none.
        tolerate_failures: end normally even when slides failed (they are still listed).
        val_handlers: Ignite handlers attached to this engine (``attach(engine)``).
        progress: show a progress bar over slides.

    Each iteration's output is ``{"slide": path, "status": "done" | "skipped" | "failed"}``; ``state.result``
    holds the :class:`~monai_wsseg.inference.cohort.CohortResult` after :meth:`run`.
    """

    def __init__(self, inferer: WSIInferer, dataset: Sequence[dict], output_dir: str | os.PathLike,
                 outputs: MapOutputs | None = None, *, backend: str = "auto", mpp: float | None = None,
                 tolerate_failures: bool = False, val_handlers: Sequence[Any] | None = None,
                 progress: bool = True) -> None:
        super().__init__(self._infer)
        self.dataset = dataset
        self.cohort = CohortRun(inferer, output_dir, outputs, backend=backend, mpp=mpp,
                                tolerate_failures=tolerate_failures)
        self.state.result = self.cohort.result  # type: ignore[attr-defined]  # Ignite's State takes custom attributes
        if progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=True, desc="slides").attach(self)
        for handler in val_handlers or ():
            handler.attach(self)

    def _infer(self, engine: Engine, item: dict) -> dict:
        status = self.cohort.infer_slide(item["image"], engine.state.iteration, roi=item.get("roi"))
        return {"slide": str(Path(item["image"])), "status": status}

    # The bundle's entry point ("$@evaluator.run()"): it returns the cohort result, not Ignite's State.
    def run(  # type: ignore[override]
        self, data: Sequence[dict] | None = None, max_epochs: int = 1, **kwargs: Any
    ) -> CohortResult:
        """Infer this rank's share of ``data`` (default: ``dataset``) once; returns the cohort result.

        Raises:
            ValueError: the output folder is not writable, or slides share a file stem (before any work).
            CohortError: at the end, when any slide failed and failures are not tolerated.
        """
        items = list(self.dataset if data is None else data)
        mine = self.cohort.start([item["image"] for item in items])
        self.state.result = self.cohort.result  # type: ignore[attr-defined]  # as in __init__
        if mine:
            item_of = {Path(item["image"]): item for item in items}  # one per path: stems are unique
            super().run([item_of[path] for path in mine], max_epochs=max_epochs, **kwargs)
        else:
            logger.info("no slides to infer on this rank")
        return self.cohort.finish()
