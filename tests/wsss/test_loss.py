"""Multi-layer pseudo supervision: Σ λ_l · CE(logits, pseudo_l), ignore index, input checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monai_wsseg.wsss.loss import MultiLayerPseudoLoss


def _ce(logit_row: list[float], label: int) -> float:
    """Cross entropy of one pixel, by hand: log Σ exp(z) − z_label."""
    return math.log(sum(math.exp(z) for z in logit_row)) - logit_row[label]


def test_hand_computed_combination():
    # Two classes, two pixels: pixel 0 logits (2, 0), pixel 1 logits (0, 1).
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    masks = torch.tensor([[[[0, 1]], [[1, 1]], [[0, 0]]]])  # (1, 3, 1, 2): layers b4_3, b5_2, bn7
    p0, p1 = [2.0, 0.0], [0.0, 1.0]
    layer = [
        (_ce(p0, 0) + _ce(p1, 1)) / 2,
        (_ce(p0, 1) + _ce(p1, 1)) / 2,
        (_ce(p0, 0) + _ce(p1, 0)) / 2,
    ]
    expected = 0.2 * layer[0] + 0.2 * layer[1] + 0.6 * layer[2]
    loss = MultiLayerPseudoLoss()(logits, masks)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_matches_weighted_torch_cross_entropy_and_has_gradients():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    masks = torch.randint(0, 4, (2, 2, 8, 8))
    loss = MultiLayerPseudoLoss(weights=(0.3, 0.7))(logits, masks)
    expected = 0.3 * F.cross_entropy(logits, masks[:, 0]) + 0.7 * F.cross_entropy(logits, masks[:, 1])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_ignore_index():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])
    masks = torch.tensor([[[[0, 255]]]])  # one layer; pixel 1 ignored
    loss = MultiLayerPseudoLoss(weights=(1.0,))(logits, masks)
    assert loss.item() == pytest.approx(_ce([2.0, 0.0], 0), rel=1e-6)  # mean over the one kept pixel
    # A layer with every pixel ignored adds 0, not NaN.
    masks = torch.tensor([[[[0, 1]], [[255, 255]]]])
    loss = MultiLayerPseudoLoss(weights=(0.5, 0.5))(logits, masks)
    assert loss.item() == pytest.approx(0.5 * (_ce([2.0, 0.0], 0) + _ce([0.0, 1.0], 1)) / 2, rel=1e-6)
    # Another ignore value, and 255 then is an out-of-range label.
    assert MultiLayerPseudoLoss((1.0,), ignore_index=-1)(logits, torch.tensor([[[[0, -1]]]])).item() == \
        pytest.approx(_ce([2.0, 0.0], 0), rel=1e-6)
    with pytest.raises(ValueError, match=r"labels in \[0, 255\], outside 0..1"):
        MultiLayerPseudoLoss((1.0,), ignore_index=-1)(logits, torch.tensor([[[[0, 255]]]]))


def test_shape_and_value_errors():
    loss = MultiLayerPseudoLoss()
    logits = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="pseudo_masks has 2 layers, the loss has 3 weights"):
        loss(logits, torch.zeros(2, 2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pseudo_masks must be \(B, L, H, W\) with L = 3"):
        loss(logits, torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"do not match logits .* spatial size"):
        loss(logits, torch.zeros(2, 3, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="do not match logits"):
        loss(logits, torch.zeros(1, 3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer labels"):
        loss(logits, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"logits must be \(B, C, H, W\)"):
        loss(torch.zeros(3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\], outside 0..2"):
        bad = torch.zeros(2, 3, 4, 4, dtype=torch.long)
        bad[1, 2, 3, 3] = 3
        loss(logits, bad)
    with pytest.raises(ValueError, match="≥ 0"):
        MultiLayerPseudoLoss(weights=(0.5, -0.1))
    with pytest.raises(ValueError, match="at least one"):
        MultiLayerPseudoLoss(weights=())
    with pytest.raises(ValueError, match="not all be 0"):
        MultiLayerPseudoLoss(weights=(0.0, 0.0))
