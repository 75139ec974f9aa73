import math

import numpy as np
import pytest

from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.metrics.slide_labels import label_margin, top_cells, top_cells_auc, top_fraction_mean
from monai_wsseg.mil import SlideLabelScore, additional_metrics, key_metric


def test_top_fraction_mean():
    prob = np.arange(10, dtype=float).reshape(2, 5) / 10
    valid = np.ones((2, 5), bool)
    assert top_fraction_mean(prob, valid, 0.2) == pytest.approx(0.85)
    valid[1, 4] = False  # the highest cell is outside the tissue
    assert top_fraction_mean(prob, valid, 0.1) == pytest.approx(0.8)
    assert math.isnan(top_fraction_mean(prob, np.zeros_like(valid), 0.1))
    with pytest.raises(ValueError, match="fraction"):
        top_fraction_mean(prob, valid, 0)


def test_label_margin_signs():
    assert label_margin([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == pytest.approx(0.7)
    assert label_margin([0.1, 0.2, 0.8], [1, 1, 0]) < 0  # inverted maps
    assert label_margin([0.5, 0.5], [1, 0]) == 0  # constant maps
    assert math.isnan(label_margin([0.5, 0.4], [1, 1]))


def _out(prob, label):
    return {"prob": np.asarray(prob, float), "tissue": np.ones(np.shape(prob), bool), "label": label}


def test_slide_label_score_metric_tells_right_from_inverted_maps():
    is_tumor = np.zeros((10, 10), bool)
    is_tumor[:3] = True  # 30 % of the tumor slide
    metric = SlideLabelScore(0.1)
    metric.reset()
    right = np.where(is_tumor, 1.0, 0.2)
    for out in (_out(right, 1), _out(np.full((10, 10), 0.2), 0), {"slide": "bad", "error": "unreadable"}):
        metric.update(out)
    good = metric.compute()
    metric.reset()
    inverted = np.where(is_tumor, 0.0, 0.9)  # everything but tumor lights up, on both slides
    for out in (_out(inverted, 1), _out(np.full((10, 10), 0.9), 0)):
        metric.update(out)
    assert good == pytest.approx(1.0) and metric.compute() == pytest.approx(0.5)


def test_top_cells_auc_is_rank_based():
    tops = [np.array([0.003, 0.004])]
    normal = [np.array([0.001, 0.002, 0.001])]
    assert top_cells_auc(tops, normal) == 1.0  # tiny probabilities, right ranking
    assert top_cells_auc([np.array([0.5])], [np.array([0.5, 0.4])]) == pytest.approx(0.75)
    assert math.isnan(top_cells_auc([], normal))
    assert top_cells(np.array([[0.1, 0.9], [0.5, np.nan]]), np.ones((2, 2), bool), 0.5).tolist() == [0.5, 0.9]


def test_key_metric_depends_on_masks(tmp_path):
    with_mask = [SlideRecord(tmp_path / "a.tif", 1, "val", tmp_path / "a.png", "a"),
                 SlideRecord(tmp_path / "b.tif", 0, "val", None, "b")]
    without = [SlideRecord(tmp_path / "a.tif", 1, "val", None, "a"),
               SlideRecord(tmp_path / "b.tif", 0, "val", None, "b")]
    assert list(key_metric(with_mask)) == ["val_auc"] and list(additional_metrics(with_mask)) == ["val_label_score"]
    assert list(key_metric(without)) == ["val_label_score"] and additional_metrics(without) == {}
