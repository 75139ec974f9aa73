"""Whole-slide inference shared by both methods: a network over a slide's tissue, stitched into maps.

* :mod:`.engine` — :class:`WSIInferer`, a slide in, a :class:`SlideMap` (per-class probabilities) out;
* :mod:`.tiles` — the tile plan: which windows to read and where their outputs land;
* :mod:`.device_decode` — the windows decoded on the inferer's device (nvJPEG on a GPU);
* :mod:`.cohort` — many slides, resumable and shardable, each slide's outputs written (:class:`CohortRun`,
  :func:`run_cohort`); :mod:`.evaluator` — the same loop as an Ignite engine, the ``dataset`` / ``evaluator``
  pair of the inference bundles (:class:`CohortEvaluator`);
* :mod:`.region` — one region of a slide exactly as a whole-slide run would infer it (MONAI Label);
* :mod:`.report` — the per-slide report of what could not be computed.

The output formats are in :mod:`monai_wsseg.io`. Names are imported on first use
(:mod:`monai_wsseg.utils.lazy`), so ``import monai_wsseg.inference.report`` does not pay for MONAI.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "cohort": ("CohortError", "CohortResult", "CohortRun", "MapOutputs", "check_stems", "check_writable",
               "cohort_slides", "failure_reason", "run_cohort", "shard", "write_slide_outputs"),
    "device_decode": ("DeviceWindows",),
    "engine": ("SlideMap", "WSIInferer"),
    "evaluator": ("CohortEvaluator", "patch_dataset", "slide_dataset"),
    "region": ("RegionMap", "infer_region", "region_cells"),
    "report": ("REPORT_SUFFIX", "read_slide_report", "slide_report", "unread_cells", "write_slide_report"),
    "tiles": ("TilePlan", "check_tile_settings", "plan_tiles"),
})
