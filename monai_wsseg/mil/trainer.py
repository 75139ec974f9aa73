"""Ignite glue for MIL training (paper A): the bag iteration, epoch bookkeeping, and slide selection.

A step takes ``B`` bags of ``N`` patches (``(B, N, 3, P, P)``), runs the fully convolutional network on
the ``B·N`` patches at once, reduces each patch's dense logits to one instance logit (their mean, which
for a ResNet with a 1×1 head is exactly the ResNet's own global-pool classifier), and applies the
top-α / bottom-β loss per bag. ``instance="cell"`` instead makes every output cell an instance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.utils import CommonKeys as Keys

from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.engines.epochs import start_dataset_epoch
from monai_wsseg.engines.precision import engine_precision

__all__ = ["MILTrainer", "instance_logits", "mil_slides"]

logger = logging.getLogger(__name__)


def instance_logits(dense: torch.Tensor, bags: int, instance: str = "patch") -> torch.Tensor:
    """Instance logits of ``bags`` bags from dense network output.

    Args:
        dense: ``(B·N, 1, h, w)`` tumor logits of the ``B·N`` patches (or ``(B·N, 1)``).
        bags: ``B``.
        instance: ``"patch"`` → ``(B, N)`` (mean over each patch's cells); ``"cell"`` → ``(B, N, h, w)``.
    """
    if dense.ndim not in (2, 4) or dense.shape[1] != 1:
        raise ValueError(f"the network must give one tumor logit channel, got output shape {tuple(dense.shape)}")
    if dense.shape[0] % bags:
        raise ValueError(f"{dense.shape[0]} patch outputs do not split into {bags} bags")
    n = dense.shape[0] // bags
    if dense.ndim == 2 or instance == "patch":
        return dense.reshape(bags, n, -1).mean(dim=2)
    if instance == "cell":
        return dense.reshape(bags, n, *dense.shape[2:])
    raise ValueError(f"instance must be 'patch' or 'cell', got {instance!r}")


class MILTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` over bags from :class:`~monai_wsseg.mil.bags.SlideBagDataset`.

    Batches come from :func:`~monai_wsseg.mil.bags.collate_bags`: ``image`` ``(B, N, 3, P, P)``,
    ``label`` ``(B,)``, ``slide`` (B paths) and ``errors`` (slides that could not be read). Unreadable
    slides are skipped for the step, logged, and listed at the end of the epoch in
    ``state.skipped_slides`` (``{path: error}``). A non-finite loss stops training with
    ``FloatingPointError`` naming the iteration and the slides, before any weight is changed, so the
    last checkpoint stays good.

    Each epoch starts with ``dataset.set_epoch(epoch)`` when the loader's dataset has it, so every
    epoch draws new bags (reproducibly).

    Args:
        instance: ``"patch"`` (paper: one instance per patch) or ``"cell"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (:mod:`monai_wsseg.utils.precision`): the
            forward pass runs under that autocast (contiguous tensors, see the module), with a gradient scaler for
            fp16 on CUDA. Replaces ``SupervisedTrainer``'s ``amp``, which autocasts on CUDA only.
        seed: when given, the global generators (torch, numpy, ``random``) are re-seeded from
            ``(seed, epoch)`` at the start of every epoch, so the shuffle order and the DataLoader
            workers' seeds of epoch ``e`` do not depend on what ran before it: a run resumed from the
            checkpoint of epoch ``e - 1`` continues exactly as the uninterrupted run.
        All other arguments are those of ``SupervisedTrainer``; ``loss_function`` takes ``(B, N)`` (or
        ``(B, N, h, w)``) logits and ``(B,)`` labels, e.g. ``TopKBottomKMILLoss``.
    """

    def __init__(self, *args, instance: str = "patch", seed: int | None = None, precision: str = "auto",
                 **kwargs) -> None:
        if instance not in ("patch", "cell"):
            raise ValueError(f"instance must be 'patch' or 'cell', got {instance!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = seed
        kwargs.setdefault("decollate", False)
        self.precision = engine_precision("MILTrainer", precision, kwargs)
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.state.skipped_slides = {}
        self._epoch_skipped: dict[str, str] = {}
        self.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._report_skipped)

    def _start_epoch(self, engine: Engine) -> None:
        if self.seed is not None:
            # Before the epoch's DataLoader iterator exists (Ignite creates it after EPOCH_STARTED), so
            # the shuffle and the workers' base seed come from (seed, epoch) alone.
            from monai.utils import set_determinism

            set_determinism(seed=self.seed * 100_003 + engine.state.epoch)
        start_dataset_epoch(engine)
        self._epoch_skipped = {}

    def _report_skipped(self, engine: Engine) -> None:
        if self._epoch_skipped:
            lines = "\n  ".join(f"{slide}: {err}" for slide, err in sorted(self._epoch_skipped.items()))
            logger.warning("epoch %d: %d slide(s) skipped:\n  %s", engine.state.epoch, len(self._epoch_skipped), lines)
        engine.state.skipped_slides.update(self._epoch_skipped)  # type: ignore[attr-defined]  # set in __init__

    def _iteration(self, engine: SupervisedTrainer, batchdata: dict) -> dict:
        for slide, err in batchdata.get("errors", []):
            if slide not in self._epoch_skipped:
                logger.warning("iteration %d: skipped %s: %s", engine.state.iteration, slide, err)
            self._epoch_skipped[slide] = err
        if "image" not in batchdata:  # every slide of this step was unreadable
            engine.state.output = {}
            return engine.state.output
        images = batchdata["image"].to(engine.state.device, non_blocking=engine.non_blocking)
        labels = batchdata["label"].to(engine.state.device, non_blocking=engine.non_blocking)
        b, n = images.shape[:2]
        patches = images.reshape(b * n, *images.shape[2:])
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with self.precision.autocast():
            dense = engine.inferer(patches, engine.network)
            logits = instance_logits(dense.float(), b, self.instance)
            loss = engine.loss_function(logits, labels).mean()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"non-finite loss ({loss.item()}) at iteration {engine.state.iteration} (epoch {engine.state.epoch}) "
                f"on slide(s) {', '.join(batchdata['slide'])}; training stopped before the update, the last "
                "checkpoint is kept"
            )
        if engine.amp and engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.optimizer.step()
        engine.state.output = {Keys.LOSS: loss.detach(), Keys.LABEL: labels, Keys.PRED: logits.detach(),
                               "slide": batchdata["slide"]}
        return engine.state.output


def mil_slides(records: Sequence[SlideRecord], split: str | None, *, require_both_labels: bool = True,
               what: str = "cohort") -> list[SlideRecord]:
    """The records of one split (all when ``split`` is ``None``), checked for MIL training.

    Raises:
        ValueError: no slide in the split, a slide without a label, or (``require_both_labels``) no
            tumor or no normal slide — the loss needs both to mean anything.
    """
    chosen = [r for r in records if split is None or r.split == split]
    where = f"{what}" + (f", split '{split}'" if split else "")
    if not chosen:
        splits = sorted({str(r.split) for r in records})
        raise ValueError(f"{where}: no slides (splits present: {', '.join(splits) or 'none'})")
    unlabelled = [str(r.slide) for r in chosen if r.label not in (0, 1)]
    if unlabelled:
        raise ValueError(f"{where}: {len(unlabelled)} slide(s) without a 0/1 label, e.g. {unlabelled[0]}")
    if require_both_labels:
        n_tumor = sum(r.label == 1 for r in chosen)
        if n_tumor == 0 or n_tumor == len(chosen):
            missing = "tumor (label 1)" if n_tumor == 0 else "normal (label 0)"
            raise ValueError(f"{where}: {len(chosen)} slide(s) but none {missing}; MIL training needs both")
    return chosen
