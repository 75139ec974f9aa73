"""Whole-slide validation for MIL training: one evaluator iteration = one validation slide's tumor map.

The validation metric of paper A is the pixel AUC of tumor maps against expert masks. A normal slide
(label 0) needs no mask: all of its tissue is normal. When no validation slide gives tumor pixels (no
masks), the metric falls back to the slide AUC of the maximum tumor probability, so a cohort with
slide labels only still selects a best checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from ignite.metrics import Metric
from monai.engines import Evaluator
from typing_extensions import override

from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.inference.cohort import shard
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.metrics.auc import AUCAccumulator
from monai_wsseg.metrics.tumor_maps import TUMOR_FRACTION, load_mask, mask_on_grid
from monai_wsseg.wsi.slide import SlideReadError, open_slide
from monai_wsseg.wsi.tissue import compute_tissue_mask, tissue_on_grid

__all__ = ["SlideMapEvaluator", "TumorAUC", "slide_map_targets"]

logger = logging.getLogger(__name__)


def slide_map_targets(record: SlideRecord, slide, tissue, downsample: int,
                      shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Tissue cells and tumor truth of a map grid.

    Args:
        record: the slide's manifest row (label, optional expert mask).
        slide: the opened slide; tissue: its :class:`~monai_wsseg.wsi.tissue.TissueMask`.
        downsample: level-0 pixels per map cell; shape: ``(h, w)`` of the map.

    A cell is tissue / tumor when at least half of it is (as in the evaluation tables).

    Returns:
        ``(tissue, truth)``: ``(h, w)`` bool arrays; ``truth`` is ``None`` for a tumor slide without a mask.
    """
    tissue_cells = tissue_on_grid(tissue, downsample, shape)
    if record.mask is not None:
        mask, mask_ds = load_mask(record.mask, slide.dimensions)
        truth = mask_on_grid(mask, mask_ds, downsample, shape) >= TUMOR_FRACTION
    elif record.label == 0:
        truth = np.zeros(shape, bool)
    else:
        truth = None
    return tissue_cells, truth


class TumorAUC(Metric):
    """Pixel AUC over the tissue cells of all slides seen; slide AUC of the maximum when no pixel truth.

    ``update`` takes the evaluator output ``{"prob": (h, w), "tissue": (h, w) bool, "truth": (h, w) bool
    or None, "label": 0/1}`` (an output without ``"prob"`` — an unreadable slide — is ignored).
    Under ``torch.distributed`` the histograms and slide scores of all ranks are pooled.
    """

    def __init__(self, output_transform=lambda x: x, device: str | torch.device = "cpu") -> None:
        super().__init__(output_transform=output_transform, device=device)

    @override
    def iteration_completed(self, engine) -> None:
        # Ignite's default insists on (y_pred, y) pairs; a slide map output is a dict of arrays.
        self.update(self._output_transform(engine.state.output))

    @override
    def reset(self) -> None:
        self._pixels = AUCAccumulator()
        self._slides: list[tuple[float, int]] = []

    @override
    def update(self, output: dict) -> None:
        if not output or "prob" not in output:
            return
        prob, tissue = output["prob"], output["tissue"]
        valid = tissue & ~np.isnan(prob)
        if output.get("truth") is not None:
            self._pixels.update(np.nan_to_num(prob), output["truth"], valid)
        if valid.any():
            self._slides.append((float(np.nanmax(np.where(valid, prob, np.nan))), int(output["label"])))

    @override
    def compute(self) -> float:
        pos, neg, slides = self._pixels.pos, self._pixels.neg, self._slides
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            hist = torch.from_numpy(np.stack([pos, neg]))
            dist.all_reduce(hist)
            pos, neg = hist[0].numpy(), hist[1].numpy()
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, slides)
            slides = [s for part in gathered for s in part]
        if pos.sum() and neg.sum():
            acc = AUCAccumulator(len(pos))
            acc.pos, acc.neg = pos.copy(), neg.copy()
            return acc.auc()
        labels = np.array([lab for _, lab in slides])
        if labels.size and 0 < labels.sum() < labels.size:
            scores = np.array([s for s, _ in slides])
            greater = (scores[labels == 1][:, None] > scores[labels == 0][None, :]).mean()
            ties = (scores[labels == 1][:, None] == scores[labels == 0][None, :]).mean()
            return float(greater + 0.5 * ties)
        logger.warning("validation AUC undefined: the validation slides give only one class")
        return float("nan")


class SlideMapEvaluator(Evaluator):
    """MONAI ``Evaluator`` whose iterations are whole validation slides run through a :class:`WSIInferer`.

    Under ``torch.distributed`` each rank takes its share of the slides (the metric pools them). The
    inferer holds the trained network, so each run sees the current weights. An unreadable slide is
    logged and skipped.

    Args:
        device: where the network runs.
        val_slides: validation records (label, optional mask).
        inferer: the whole-slide inferer (network, mpp, tile ...); its output channel 0 is the tumor map.
        backend: slide reading backend; tissue_mpp: resolution of the tissue masks.
        key_val_metric, additional_metrics, val_handlers, amp: as for ``monai.engines.Evaluator``.
    """

    def __init__(
        self,
        device: str | torch.device,
        val_slides: Sequence[SlideRecord],
        inferer: WSIInferer,
        *,
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        val_handlers: Sequence | None = None,
        backend: str = "auto",
        tissue_mpp: float = 8.0,
        amp: bool = False,
    ) -> None:
        mine = shard(list(val_slides)) or [None]  # a rank without slides still joins the metric's all-reduce
        super().__init__(
            device=device, val_data_loader=mine, epoch_length=len(mine),
            key_val_metric=key_val_metric or {"val_auc": TumorAUC()}, additional_metrics=additional_metrics,
            val_handlers=val_handlers, amp=amp, decollate=False,
        )
        self.inferer, self.backend, self.tissue_mpp = inferer, backend, tissue_mpp
        self.network = inferer.network  # what checkpoint handlers and MONAI's evaluator hooks expect
        self._targets: dict[str, tuple] = {}  # slide -> (tissue mask, tissue cells, truth): fixed across epochs

    # The loader yields slide records (one per iteration), not the dict batches MONAI's Workflow declares.
    def _iteration(self, engine: SlideMapEvaluator, record: SlideRecord | None) -> dict:  # type: ignore[override]
        if record is None:
            return {}
        try:
            key = str(record.slide)
            with open_slide(record.slide, backend=self.backend) as slide:
                cached = self._targets.get(key)
                tissue = cached[0] if cached else compute_tissue_mask(slide, mpp=self.tissue_mpp)
                smap = self.inferer(slide, tissue=tissue)
                if cached is None:
                    cached = (tissue, *slide_map_targets(record, slide, tissue, smap.downsample,
                                                         smap.probabilities.shape[1:]))
                    self._targets[key] = cached
            _, tissue_cells, truth = cached
        except (SlideReadError, ValueError, OSError) as exc:
            logger.warning("validation: skipped %s: %s", record.slide, str(exc).splitlines()[0])
            return {"slide": str(record.slide), "error": str(exc)}
        return {"slide": str(record.slide), "prob": smap.probabilities[0], "tissue": tissue_cells,
                "truth": truth, "label": record.label}
