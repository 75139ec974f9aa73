"""Metrics as plain numpy: arrays in, numbers out, poolable over slides in constant memory.

* :mod:`.auc` — ROC AUC: histogram pixel AUC (:class:`AUCAccumulator`, :func:`pixel_auc`) and the exact
  AUC of scores in memory (:func:`rank_auc`);
* :mod:`.tumor_maps` — paper A's tumor maps against expert masks: masks on a map grid, AUC with and
  without background, confusion at a threshold, the F1-best threshold;
* :mod:`.slide_labels` — map scores that need slide labels only (checkpoint choice without masks);
* :mod:`.tissue` — paper B's tissue scores: IoU per class, MIoU, FwIoU, ACC.

The Ignite metrics that feed them from an engine sit with the method that uses them, as MONAI's handlers
wrap its metrics: :class:`~monai_wsseg.mil.validation.TumorAUC` and
:class:`~monai_wsseg.mil.selection.SlideLabelScore` (paper A), :class:`~monai_wsseg.wsss.training.TissueMIoU`
(paper B). Names are imported on first use (:mod:`monai_wsseg.utils.lazy`).
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "auc": ("AUCAccumulator", "pixel_auc", "rank_auc"),
    "slide_labels": ("label_margin", "top_cells", "top_cells_auc", "top_fraction_mean"),
    "tissue": ("TissueConfusion", "read_scores_table", "tissue_scores"),
    "tumor_maps": ("TUMOR_FRACTION", "Confusion", "TumorMapAccumulator", "best_threshold", "confusion_at",
                   "load_mask", "mask_on_grid"),
})
