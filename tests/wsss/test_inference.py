"""WSSS inference: ``run_inference`` picks the patch or the slide pipeline from ``slides_dir``, and
``inference_dataset`` lists the files that pipeline reads."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from monai_wsseg.io.palettes import class_palette
from monai_wsseg.wsss.inference import inference_dataset, run_inference
from monai_wsseg.wsss.patches import read_index_mask
from tests.inference.test_cohort import make_slides

CLASSES = ["TE", "NEC", "LYM", "TAS"]


class RedIsClassTwo(nn.Module):
    """Gated probabilities ``(B, 4, H, W)``: class 2 where the red channel is above average, class 0 elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, :1] > 0).float()
        return torch.cat([1 - red, torch.zeros_like(red), red, torch.zeros_like(red)], dim=1)


class Evaluator:
    """Stands in for the bundle's ``CohortEvaluator``."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self) -> str:
        self.runs += 1
        return "slides done"


def write_patches(folder, n: int = 2):
    folder.mkdir(parents=True)
    for i in range(n):
        rgb = np.full((16, 16, 3), 255, np.uint8)  # white background on the right
        rgb[:, :8] = (200, 60, 120) if i == 0 else (60, 60, 200)
        Image.fromarray(rgb).save(folder / f"p{i}[1 0 1 0].png")


def run(evaluator, tmp_path, slides_dir=None):
    return run_inference(evaluator, RedIsClassTwo(), input_dir=tmp_path / "img", output_dir=tmp_path / "pred",
                         slides_dir=slides_dir, mean=[0.5] * 3, std=[0.25] * 3, palette=class_palette(CLASSES),
                         background_index=4, progress=False)


def test_without_slides_every_patch_gets_a_mask_and_the_evaluator_is_not_run(tmp_path):
    write_patches(tmp_path / "img")
    evaluator = Evaluator()
    assert run(evaluator, tmp_path) == {"written": 2, "skipped": 0, "failed": 0}
    assert evaluator.runs == 0
    red, blue = (read_index_mask(tmp_path / "pred" / f"p{i}[1 0 1 0].png") for i in range(2))
    assert (red[:, :8] == 2).all() and (blue[:, :8] == 0).all()
    assert (red[:, 8:] == 4).all() and (blue[:, 8:] == 4).all()  # white background -> background index
    assert run(evaluator, tmp_path) == {"written": 0, "skipped": 2, "failed": 0}  # a rerun keeps the masks


def test_with_slides_the_evaluator_runs_and_no_patch_is_read(tmp_path):
    evaluator = Evaluator()
    assert run(evaluator, tmp_path, slides_dir=tmp_path / "slides") == "slides done"
    assert evaluator.runs == 1 and not (tmp_path / "pred").exists()


def test_the_dataset_lists_what_the_chosen_pipeline_reads(tmp_path):
    write_patches(tmp_path / "img")
    (tmp_path / "img" / "notes.txt").write_text("not a patch")
    patches = inference_dataset(tmp_path / "img")
    assert [d["image"] for d in patches] == [str(tmp_path / "img" / f"p{i}[1 0 1 0].png") for i in range(2)]
    slides = make_slides(tmp_path / "slides", 1)
    assert [d["image"] for d in inference_dataset(tmp_path / "img", tmp_path / "slides")] == [str(slides[0])]
