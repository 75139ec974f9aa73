"""Checkpoint selection for MIL training, with or without expert masks on the validation slides.

With masks, the key validation metric is the pixel AUC of the maps (:class:`TumorAUC`). Without them (the
common case: a cohort labelled per slide), it is :class:`SlideLabelScore`, the tumor-versus-normal margin
of :func:`~monai_wsseg.metrics.slide_labels.label_margin`, computed from slide labels alone. Both are
computed whenever they can be, so a run with masks also records which checkpoint the labels alone would
have chosen (``models/model_label.pt``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from ignite.metrics import Metric
from typing_extensions import override

from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.metrics.slide_labels import top_cells, top_cells_auc

__all__ = ["SlideLabelScore", "additional_metrics", "key_metric"]


class SlideLabelScore(Metric):
    """:func:`~monai_wsseg.metrics.slide_labels.top_cells_auc` of the validation slides (no mask needed):
    the tumor slides' top ``fraction`` of tissue cells against all tissue cells of the normal slides.

    ``update`` takes the evaluator output ``{"prob": (h, w), "tissue": (h, w) bool, "label": 0/1, ...}``;
    an output without ``"prob"`` (an unreadable slide) is ignored. Pooled over ranks under
    ``torch.distributed``.

    Args:
        fraction: share of each slide's tissue cells averaged (default 0.1: tumor slides of the cohorts this
            project knows hold 10–40 % tumor, so their top tenth is tumor when the map is right).
    """

    def __init__(self, fraction: float = 0.1, output_transform=lambda x: x, device: str | torch.device = "cpu") -> None:
        self.fraction = float(fraction)
        super().__init__(output_transform=output_transform, device=device)

    @override
    def iteration_completed(self, engine) -> None:
        self.update(self._output_transform(engine.state.output))

    @override
    def reset(self) -> None:
        self._cells: list[tuple[np.ndarray, int]] = []

    @override
    def update(self, output: dict) -> None:
        if not output or "prob" not in output or output.get("label") not in (0, 1):
            return
        prob, valid = np.asarray(output["prob"], np.float32), np.asarray(output["tissue"], bool)
        cells = top_cells(prob, valid, self.fraction) if output["label"] == 1 else prob[valid & np.isfinite(prob)]
        if cells.size:
            self._cells.append((cells.astype(np.float32), int(output["label"])))

    @override
    def compute(self) -> float:
        cells = self._cells
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, cells)
            cells = [c for part in gathered for c in part]
        return top_cells_auc([c for c, lab in cells if lab == 1], [c for c, lab in cells if lab == 0])


def _has_masks(slides: Sequence[SlideRecord]) -> bool:
    return any(r.label == 1 and r.mask is not None for r in slides)


def key_metric(slides: Sequence[SlideRecord], fraction: float = 0.1) -> dict[str, Metric]:
    """The key validation metric for these slides: ``{"val_auc": TumorAUC()}`` when a tumor slide has a
    mask, else ``{"val_label_score": SlideLabelScore(fraction)}``."""
    from monai_wsseg.mil.validation import TumorAUC  # the evaluator's module imports this one

    return {"val_auc": TumorAUC()} if _has_masks(slides) else {"val_label_score": SlideLabelScore(fraction)}


def additional_metrics(slides: Sequence[SlideRecord], fraction: float = 0.1) -> dict[str, Metric]:
    """The label score beside the key metric when that is the pixel AUC (else nothing more to add)."""
    return {"val_label_score": SlideLabelScore(fraction)} if _has_masks(slides) else {}
