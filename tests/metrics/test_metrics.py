"""tissue_scores against hand-computed confusion matrices; pixel AUC and the exact rank AUC against the rank
definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from monai_wsseg.metrics import auc as auc_module
from monai_wsseg.metrics.auc import AUCAccumulator, pixel_auc
from monai_wsseg.metrics.tissue import tissue_scores


def test_tissue_scores_by_hand():
    # truth: 4 px class 0, 3 px class 1, 1 px class 2, 2 px ignored (4)
    target = np.array([0, 0, 0, 0, 1, 1, 1, 2, 4, 4])
    pred = np.array([0, 0, 0, 1, 1, 1, 0, 2, 3, 1])
    s = tissue_scores(pred, target, num_classes=4, ignore_index=4)
    # class 0: TP 3, FN 1, FP 1 → 3/5; class 1: TP 2, FN 1, FP 1 → 2/4; class 2: 1/1; class 3 absent → NaN
    np.testing.assert_allclose(s["iou"][:3], [0.6, 0.5, 1.0])
    assert np.isnan(s["iou"][3])
    assert s["miou"] == pytest.approx((0.6 + 0.5 + 1.0) / 3)
    assert s["fwiou"] == pytest.approx(4 / 8 * 0.6 + 3 / 8 * 0.5 + 1 / 8 * 1.0)
    assert s["acc"] == pytest.approx(6 / 8)


def test_class_predicted_but_absent_from_truth_scores_zero():
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])
    s = tissue_scores(pred, target, num_classes=3)
    np.testing.assert_allclose(s["iou"], [0.5, 1.0, 0.0])
    assert s["miou"] == pytest.approx(0.5)
    assert s["acc"] == pytest.approx(0.75)


def test_out_of_range_prediction_is_a_miss_and_pooling_adds_matrices():
    target = [np.array([0, 1]), np.array([1, 1])]
    pred = [np.array([0, 4]), np.array([1, 0])]
    s = tissue_scores(pred, target, num_classes=2, ignore_index=4)
    # class 0: TP 1, FP 1 → 1/2; class 1: TP 1, FN 2 (one "other") → 1/3
    np.testing.assert_allclose(s["iou"], [0.5, 1 / 3])
    assert s["acc"] == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match=r"truth holds labels \[7\]"):
        tissue_scores(np.zeros(2), np.array([0, 7]), num_classes=2)


def rank_auc(scores, truth):
    r = rankdata(scores)
    pos = truth.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return (r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def test_pixel_auc_matches_rank_definition_with_ties():
    rng = np.random.default_rng(0)
    truth = rng.random(5000) < 0.3
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * truth, 0.2), 0, 1) * 255) / 255  # uint8-like, many ties
    assert pixel_auc(scores, truth) == pytest.approx(rank_auc(scores, truth), abs=1e-9)
    assert pixel_auc(1 - scores, truth) == pytest.approx(1 - rank_auc(scores, truth), abs=1e-9)


def test_pooled_auc_equals_auc_of_concatenation_and_nan_is_skipped():
    rng = np.random.default_rng(1)
    a_s, a_t = rng.random(300), rng.random(300) < 0.5
    b_s, b_t = rng.random(200), rng.random(200) < 0.2
    acc = AUCAccumulator()
    acc.update(a_s, a_t)
    acc.update(b_s, b_t)
    assert acc.auc() == pytest.approx(pixel_auc(np.r_[a_s, b_s], np.r_[a_t, b_t]))
    with_nan = np.r_[a_s, np.nan]
    assert pixel_auc(with_nan, np.r_[a_t, True]) == pytest.approx(pixel_auc(a_s, a_t))
    assert np.isnan(pixel_auc(np.array([0.2, 0.4]), np.array([0, 0])))
    with pytest.raises(ValueError, match="must lie in"):
        pixel_auc(np.array([1.5]), np.array([1]))


def test_exact_rank_auc_of_unbounded_scores_with_ties():
    rng = np.random.default_rng(2)
    truth = rng.random(3000) < 0.4
    logits = np.round(rng.normal(2.0 * truth, 3.0), 1)  # outside [0, 1], many ties
    assert auc_module.rank_auc(logits, truth) == pytest.approx(rank_auc(logits, truth), abs=1e-12)
    pos, neg = logits[truth], logits[~truth]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auc_module.rank_auc(logits, truth.astype(np.uint8)) == pytest.approx(pairwise, abs=1e-12)
    assert auc_module.rank_auc(np.array([3.0, 1.0]), np.array([1, 0])) == 1.0
    assert np.isnan(auc_module.rank_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    with pytest.raises(ValueError, match="differ in length"):
        auc_module.rank_auc(np.zeros(3), np.zeros(2))
