"""The colour baseline: a score and its inverse rank cells oppositely; darkness finds synthetic tumor."""

from __future__ import annotations

import numpy as np
import pytest

from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import load_script


def test_colour_scores_are_bounded_and_paired():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    scores = load_script("colour_baseline").colour_scores(rgb)
    assert set(scores) == {"darkness", "hematoxylin", "saturation", "1-darkness", "1-hematoxylin", "1-saturation"}
    for name in ("darkness", "hematoxylin", "saturation"):
        assert scores[name].shape == (5, 7) and 0 <= scores[name].min() and scores[name].max() <= 1
        assert np.allclose(scores[name] + scores[f"1-{name}"], 1)


def test_baseline_on_a_small_cohort(tmp_path):
    root = tmp_path / "c"
    make_cohort(root, n_tumor=1, n_normal=1, size=(1024, 1024), seed=2, splits=["test", "test"])
    out = load_script("colour_baseline").main(
        ["--dataset_dir", str(root), "--split", "test", "--json", str(tmp_path / "b.json")])
    assert out["slides"] == 2
    aucs = out["auc_tissue"]
    assert aucs["darkness"] == pytest.approx(1 - aucs["1-darkness"], abs=1e-9)
    assert out["best_auc"] == max(aucs.values()) and out["best_auc"] > 0.5
    assert (tmp_path / "b.json").is_file()
