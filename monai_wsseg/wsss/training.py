"""The phase-2 training of paper B in MONAI's engines: pseudo-mask batches for the ``SupervisedTrainer``,
mask batches and the validation MIoU for its ``SupervisedEvaluator`` (``train_seg.json``).

:class:`TissueMIoU` is the Ignite face of the numpy scores in :mod:`monai_wsseg.metrics.tissue`; it sits here,
with the engines that use it, as paper A's :class:`~monai_wsseg.mil.validation.TumorAUC` sits with its
method, so that :mod:`monai_wsseg.metrics` stays numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.metrics import Metric
from typing_extensions import override

from monai_wsseg.metrics.tissue import TissueConfusion

__all__ = ["TissueMIoU", "mask_batch", "pseudo_batch"]


def pseudo_batch(batchdata: dict, device: str | torch.device | None = None, non_blocking: bool = False,
                 **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """``prepare_batch`` for ``SupervisedTrainer``: ``(image (B,3,H,W), pseudo (B,L,H,W) int64)``.

    The phase-2 loss (:class:`~monai_wsseg.wsss.loss.MultiLayerPseudoLoss`) takes the L pseudo masks
    (one per Grad-CAM layer) as its target, where MONAI's default would pass ``label``.
    """
    images = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
    pseudo = batchdata["pseudo"].to(device=device, non_blocking=non_blocking).long()
    return images, pseudo


def mask_batch(batchdata: dict, device: str | torch.device | None = None, non_blocking: bool = False,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """``prepare_batch`` for the evaluator: ``(image, mask (B,H,W) int64)``; the mask becomes the output's ``label``."""
    images = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
    return images, batchdata["mask"].to(device=device, non_blocking=non_blocking).long()


class TissueMIoU(Metric):
    """Paper B's scores over an evaluator's outputs; ``compute`` returns the MIoU.

    ``update`` takes ``(pred, mask)``: ``pred`` ``(B, C, H, W)`` scores (argmax taken here) or ``(B, H, W)``
    labels, ``mask`` ``(B, H, W)`` truth with ``ignore_index`` for unscored pixels (LUAD white
    background). All four figures (IoU per class, MIoU, FwIoU, ACC) are kept in ``self.last_scores``.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, output_transform=lambda x: x,
                 device: str | torch.device = "cpu") -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.last_scores: dict = {}
        super().__init__(output_transform=output_transform, device=device)

    @override
    def reset(self) -> None:
        self._confusion = TissueConfusion(self.num_classes, self.ignore_index)

    @override
    def update(self, output: Sequence) -> None:
        pred, mask = output
        pred = torch.stack(list(pred)) if isinstance(pred, (list, tuple)) else pred
        mask = torch.stack(list(mask)) if isinstance(mask, (list, tuple)) else mask
        if pred.ndim == 4:
            pred = pred.argmax(dim=1)
        self._confusion.update(pred.detach().cpu().numpy(), mask.detach().cpu().numpy().reshape(pred.shape))

    @override
    def compute(self) -> float:
        self.last_scores = self._confusion.scores()
        return float(self.last_scores["miou"])
