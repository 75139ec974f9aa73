"""Paper B's evaluation tables: phase-1 Grad-CAM masks per layer and phase-2 predictions, gated and not.

Rows: ``cam:<layer>`` — the pseudo-mask rule of phase 1 (Grad-CAM of the image's true classes, argmax)
on the evaluation images, whose labels come from their masks as in the paper's Table I; ``segmentation``
— argmax of the DeepLabV3+ probabilities; ``segmentation+gate`` — the same after the classification
gate (ε). Columns: IoU per class, MIoU, FwIoU, ACC, with the dataset's ignore index (white background)
left out. Written to ``evaluation.csv`` and ``evaluation.md``, each atomically.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from monai_wsseg.metrics.tissue import TissueConfusion
from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.utils.precision import resolve_precision
from monai_wsseg.wsss.cam import cams_to_mask, multi_layer_gradcam
from monai_wsseg.wsss.gate import apply_gate
from monai_wsseg.wsss.pda import PDAClassifier

__all__ = ["WSSSEvaluation"]


class WSSSEvaluation:
    """Evaluate a trained classifier (phase 1) and segmenter (phase 2) on a segmentation split.

    Args:
        classifier: a :class:`~monai_wsseg.wsss.pda.PDAClassifier` (its ``forward_with_features``
            gives the Grad-CAM layers; its logits drive the gate).
        segmenter: the phase-2 network, ``(B,3,H,W) → (B,C,H,W)`` logits; ``None`` skips phase 2.
        dataset: items ``{"image": normalised (3,H,W), "mask": (H,W), "label": (C,)}`` with an
            ``ignore_index`` attribute (e.g. ``PatchSegmentationDataset``).
        output_dir: where ``evaluation.csv`` / ``evaluation.md`` go.
        layers: Grad-CAM feature names; layer_names: how the table calls them (default: the same).
        class_names: one per class; epsilon: the gate's threshold.
        precision: autocast of the networks (:mod:`monai_wsseg.utils.precision`).
    """

    def __init__(self, classifier: PDAClassifier, segmenter: nn.Module | None, dataset: Dataset,
                 output_dir: str | os.PathLike, *, layers: Sequence[str], class_names: Sequence[str],
                 layer_names: Sequence[str] | None = None, epsilon: float = 0.1, batch_size: int = 8,
                 device: str | torch.device = "cpu", progress: bool = True, precision: str = "auto") -> None:
        self.classifier, self.segmenter, self.dataset = classifier, segmenter, dataset
        self.output_dir = Path(output_dir)
        self.layers, self.class_names = list(layers), list(class_names)
        self.layer_names = list(layer_names or layers)
        if len(self.layer_names) != len(self.layers):
            raise ValueError(f"{len(self.layer_names)} layer names for {len(self.layers)} layers")
        self.epsilon, self.batch_size, self.device, self.progress = epsilon, batch_size, torch.device(device), progress
        self.precision = resolve_precision(precision, self.device).for_training()  # Grad-CAM runs backward passes

    def run(self) -> dict[str, dict]:
        """Score every layer's Grad-CAM masks (and the segmenter, with and without the gate) on the dataset,
        write ``evaluation.csv`` / ``evaluation.md`` and return the scores per row."""
        k = len(self.class_names)
        ignore = getattr(self.dataset, "ignore_index", None)
        rows = {f"cam:{n}": TissueConfusion(k, ignore) for n in self.layer_names}
        if self.segmenter is not None:
            rows["segmentation"] = TissueConfusion(k, ignore)
            rows["segmentation+gate"] = TissueConfusion(k, ignore)
        self.classifier.to(self.device).eval()
        if self.segmenter is not None:
            self.segmenter.to(self.device).eval()
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False)
        for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not self.progress):
            images, truth = batch["image"].to(self.device), batch["mask"].numpy()
            labels = batch["label"].to(self.device)
            with self.precision.autocast():
                cams = multi_layer_gradcam(self.classifier.forward_with_features, images, labels, self.layers,
                                           out_size=tuple(images.shape[-2:]))
            for layer, name in zip(self.layers, self.layer_names, strict=True):
                rows[f"cam:{name}"].update(cams_to_mask(cams[layer], labels=labels).cpu().numpy(), truth)
            if self.segmenter is not None:
                with torch.no_grad(), self.precision.autocast():
                    probs = torch.softmax(self.segmenter(images).float(), dim=1)
                    class_probs = torch.sigmoid(self.classifier(images).float())
                    gated = apply_gate(probs, class_probs, epsilon=self.epsilon)
                rows["segmentation"].update(probs.argmax(1).cpu().numpy(), truth)
                rows["segmentation+gate"].update(gated.argmax(1).cpu().numpy(), truth)
        scores = {name: conf.scores() for name, conf in rows.items()}
        self._write(scores)
        return scores

    def _write(self, scores: dict[str, dict]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        header = ["row", *(f"iou_{c}" for c in self.class_names), "miou", "fwiou", "acc"]
        table = [[name, *(f"{v:.4f}" for v in s["iou"]), *(f"{s[m]:.4f}" for m in ("miou", "fwiou", "acc"))]
                 for name, s in scores.items()]
        text = io.StringIO()
        csv.writer(text).writerows([header, *table])
        write_text_atomically(self.output_dir / "evaluation.csv", text.getvalue())
        n = len(self.dataset)  # type: ignore[arg-type]  # map-style datasets have __len__; torch's Dataset omits it
        md = ["# WSSS evaluation", "", f"Split of {n} patches; white background ignored; "
              f"gate ε = {self.epsilon}. `cam:<layer>`: phase-1 Grad-CAM masks; `segmentation`: phase 2.", "",
              "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in table]
        write_text_atomically(self.output_dir / "evaluation.md", "\n".join(md) + "\n")


