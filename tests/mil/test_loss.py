"""The top-α / bottom-β MIL loss against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from monai_wsseg.mil.loss import TopKBottomKMILLoss


def sp(x: float) -> float:
    """softplus: BCE-with-logits is softplus(−x) for target 1 and softplus(x) for target 0."""
    return math.log1p(math.exp(x))


def test_positive_bag_top_and_bottom():
    loss = TopKBottomKMILLoss(alpha=0.4, beta=0.4)
    logits = torch.tensor([[3.0, -1.0, 0.0, 2.0, -2.0]])
    targets, mask = loss.proxy_labels(logits, torch.tensor([1]))
    assert targets.tolist() == [[1, 0, 0, 1, 0]]
    assert mask.tolist() == [[1, 1, 0, 1, 1]]  # the middle instance (logit 0) is masked out
    expected = (sp(-3) + sp(-2) + sp(-1) + sp(-2)) / 4
    assert loss(logits, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-6)


def test_negative_bag_is_all_normal():
    loss = TopKBottomKMILLoss(alpha=0.2, beta=0.0)
    logits = torch.tensor([[3.0, -1.0, 0.5]])
    targets, mask = loss.proxy_labels(logits, torch.tensor([0]))
    assert targets.tolist() == [[0, 0, 0]] and mask.tolist() == [[1, 1, 1]]
    assert loss(logits, torch.tensor([0])).item() == pytest.approx((sp(3) + sp(-1) + sp(0.5)) / 3, rel=1e-6)


def test_ties_are_broken_by_instance_order():
    loss = TopKBottomKMILLoss(alpha=0.5, beta=0.25)
    targets, mask = loss.proxy_labels(torch.zeros(1, 4), torch.tensor([1]))
    assert targets.tolist() == [[1, 1, 0, 0]] and mask.tolist() == [[1, 1, 0, 1]]


def test_single_instance_and_alpha_n_below_one():
    loss = TopKBottomKMILLoss(alpha=0.2, beta=0.8)
    targets, mask = loss.proxy_labels(torch.tensor([[-4.0]]), torch.tensor([1]))
    assert targets.tolist() == [[1]] and mask.tolist() == [[1]]  # ⌊0.2·1⌋ = 0 → still one positive
    assert loss(torch.tensor([[-4.0]]), torch.tensor([1])).item() == pytest.approx(sp(4), rel=1e-6)
    targets, mask = TopKBottomKMILLoss(alpha=0.2).proxy_labels(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([1]))
    assert targets.tolist() == [[0, 1, 0]] and mask.tolist() == [[0, 1, 0]]


def test_beta_zero_masks_everything_but_the_top():
    targets, mask = TopKBottomKMILLoss(alpha=0.5, beta=0.0).proxy_labels(
        torch.tensor([[1.0, 4.0, 2.0, 3.0]]), torch.tensor([1])
    )
    assert targets.tolist() == [[0, 1, 0, 1]] and mask.tolist() == [[0, 1, 0, 1]]


def test_alpha_plus_beta_one_labels_everything_despite_float_rounding():
    loss = TopKBottomKMILLoss(alpha=0.29, beta=0.71)  # 0.29 * 100 = 28.999999999999996 in floating point
    logits = torch.arange(100, dtype=torch.float32).flip(0)[None]
    targets, mask = loss.proxy_labels(logits, torch.tensor([1]))
    assert int(targets.sum()) == 29 and int(mask.sum()) == 100
    assert targets[0, :29].all() and not targets[0, 29:].any()


def test_class_weights_and_batch_normaliser():
    loss = TopKBottomKMILLoss(alpha=0.5, beta=0.5, c0=0.25, c1=2.0)
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    value = loss(logits, torch.tensor([1, 0])).item()
    expected = (2.0 * sp(-2) + 0.25 * sp(-1) + 0.25 * sp(0.5) + 0.25 * sp(1.5)) / 4
    assert value == pytest.approx(expected, rel=1e-6)


def test_balanced_loss_averages_each_class_on_its_own():
    loss = TopKBottomKMILLoss(alpha=0.5, beta=0.5, c0=0.25, c1=2.0, balance=True)
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    value = loss(logits, torch.tensor([1, 0])).item()
    # one tumor-labelled instance (2.0) against three normal ones: each class weighs one half
    expected = (2.0 * sp(-2) + 0.25 * (sp(-1) + sp(0.5) + sp(1.5)) / 3) / 2
    assert value == pytest.approx(expected, rel=1e-6)
    plain = TopKBottomKMILLoss(alpha=0.5, beta=0.5, c0=0.25, c1=2.0)(logits, torch.tensor([1, 0])).item()
    assert value != pytest.approx(plain, rel=1e-3)


def test_balanced_loss_with_one_class_or_equal_counts_is_the_plain_mean():
    logits = torch.tensor([[0.3, -1.2, 0.7], [1.1, -0.4, 2.0]])
    normal = torch.tensor([0, 0])
    balanced, plain = TopKBottomKMILLoss(balance=True), TopKBottomKMILLoss()
    assert balanced(logits, normal).item() == pytest.approx(plain(logits, normal).item(), rel=1e-6)
    even = torch.tensor([[0.3, -1.2], [1.1, -0.4]])
    both = dict(alpha=0.5, beta=0.5)
    assert TopKBottomKMILLoss(balance=True, **both)(even, torch.tensor([1, 1])).item() == pytest.approx(
        TopKBottomKMILLoss(**both)(even, torch.tensor([1, 1])).item(), rel=1e-6
    )


def test_spatial_instances_equal_flattened_ones_and_gradients_flow():
    torch.manual_seed(0)
    dense = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = TopKBottomKMILLoss(alpha=0.2, beta=0.4)
    labels = torch.tensor([1, 0])
    value = loss(dense, labels)
    assert value.item() == pytest.approx(loss(dense.detach().reshape(2, 48), labels).item(), rel=1e-6)
    value.backward()
    grad = dense.grad.reshape(2, -1)
    targets, mask = loss.proxy_labels(dense, labels)
    assert not targets.requires_grad and not mask.requires_grad
    assert (grad[mask == 0] == 0).all() and (grad[mask == 1] != 0).all()


@pytest.mark.parametrize(
    "alpha,beta,message",
    [(0.0, 0.2, "must be > 0"), (0.6, 0.6, "alpha \\+ beta = 1.2 > 1"), (0.2, -0.1, "must lie in"),
     (1.2, 0.0, "must lie in"), (float("nan"), 0.0, "finite")],
)
def test_infeasible_alpha_beta(alpha, beta, message):
    with pytest.raises(ValueError, match=message):
        TopKBottomKMILLoss(alpha=alpha, beta=beta)


def test_bad_labels_and_shapes():
    loss = TopKBottomKMILLoss()
    with pytest.raises(ValueError, match="must be 0 \\(normal\\) or 1 \\(tumor\\)"):
        loss(torch.zeros(2, 3), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="one slide label per bag"):
        loss(torch.zeros(2, 3), torch.tensor([1]))
    with pytest.raises(ValueError, match="must be \\(B, N\\) or \\(B, N, H, W\\)"):
        loss(torch.zeros(2, 3, 4), torch.tensor([1, 0]))
