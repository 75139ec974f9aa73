"""Progressive Dropout Attention: eqs. 7–10 on hand-made maps, train / eval behaviour, gradients, shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from monai_wsseg.wsss.pda import PDAClassifier, class_activation_maps, dropout_attention
from monai_wsseg.wsss.resnet38 import ResNet38d


class TinyBackbone(nn.Module):
    """Deterministic stand-in: ``(B, 3, H, W)`` → ``{"mid": ..., "final": ReLU(conv)}`` at stride 4."""

    out_channels = 6
    out_layers = ("mid", "final")

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(5, 6, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mid = self.conv1(x)
        return {"mid": mid, "final": F.relu(self.conv2(F.relu(mid)))}


def tiny_net(mu: float | None = 0.6, **kwargs) -> PDAClassifier:
    torch.manual_seed(0)
    return PDAClassifier(TinyBackbone(), num_classes=3, mu=mu, dropout=0.0, **kwargs)


def manual_logits(net: PDAClassifier, x: torch.Tensor, mu: float | None) -> torch.Tensor:
    """Eqs. 4, 5, 7–10 written out by hand (no dropout layer)."""
    m = net.backbone(x)["final"]
    w = net.classifier.weight[:, :, 0, 0]  # (C, D)
    if mu is not None:
        cams = torch.relu(torch.einsum("bdhw,cd->bchw", m, w))
        peak = cams.flatten(2).max(dim=2).values[:, :, None, None]
        dropped = torch.where(cams > mu * peak, 0.0, cams)
        m = m * dropped.mean(dim=1, keepdim=True)
    return m.mean(dim=(2, 3)) @ w.T


def test_dropout_masks_exactly_the_values_above_mu_max():
    cams = torch.tensor([[
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],     # max 6 → β = 3 at μ = 0.5; 3 itself is kept (≤)
        [[0.0, 0.2, 0.4], [0.8, 0.6, 1.0]],     # max 1 → β = 0.5
    ], [
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],     # an all-zero map: nothing is above 0
        [[10.0, 1.0, 4.0], [6.0, 5.0, 2.0]],    # max 10 → β = 5
    ]])
    dropped, attention = dropout_attention(cams, mu=0.5)
    expected = torch.tensor([[
        [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.2, 0.4], [0.0, 0.0, 0.0]],
    ], [
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        [[0.0, 1.0, 4.0], [0.0, 5.0, 2.0]],
    ]])
    torch.testing.assert_close(dropped, expected)
    torch.testing.assert_close(attention, expected.mean(dim=1, keepdim=True))
    assert attention.shape == (2, 1, 2, 3)
    # A smaller μ drops more: at μ = 0.25 only values ≤ 1.5 / 0.25 / 2.5 survive.
    dropped, _ = dropout_attention(cams, mu=0.25)
    assert dropped[0, 0].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert dropped[1, 1].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]


def test_mu_one_drops_nothing():
    cams = torch.rand(2, 4, 5, 5)
    dropped, attention = dropout_attention(cams, mu=1.0)
    assert torch.equal(dropped, cams)
    torch.testing.assert_close(attention, cams.mean(dim=1, keepdim=True))


def test_class_activation_maps_is_the_classifier_at_every_location():
    feats, weight = torch.randn(2, 6, 4, 4), torch.randn(3, 6)
    raw = class_activation_maps(feats, weight, relu=False)
    torch.testing.assert_close(raw[:, :, 1, 2], feats[:, :, 1, 2] @ weight.T)
    assert torch.equal(class_activation_maps(feats, weight[:, :, None, None]), raw.clamp_min(0))


def test_training_forward_follows_the_equations():
    net = tiny_net(mu=0.6).train()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net(x), manual_logits(net, x, 0.6))
    out = net(x, return_cams=True)
    assert out["dropped_cams"].shape == out["cams"].shape == (2, 3, 8, 8)
    assert out["attention"].shape == (2, 1, 8, 8)
    # every class map lost at least its maximum; the attention is built from what is left
    peaks = out["cams"].amax(dim=(2, 3))
    assert torch.all(out["dropped_cams"].amax(dim=(2, 3)) <= 0.6 * peaks + 1e-6)
    net.mu = 1.0
    torch.testing.assert_close(net(x), manual_logits(net, x, 1.0))


def test_eval_forward_does_not_drop():
    net = tiny_net(mu=0.6)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        train_mu1 = manual_logits(net, x, 1.0)
        train_mu06 = net.train()(x)
        net.eval()
        torch.testing.assert_close(net(x), train_mu1)  # default: attention, nothing dropped
        assert not torch.allclose(train_mu06, train_mu1)
        out = net(x, return_cams=True)
        assert torch.equal(out["dropped_cams"], out["cams"])
        net.eval_attention = False  # reference-style evaluation: the plain GAP classifier
        torch.testing.assert_close(net(x), manual_logits(net, x, None))


def test_no_pda_is_the_plain_cam_classifier():
    net = tiny_net(mu=None)
    x = torch.randn(2, 3, 32, 32)
    for mode in (True, False):
        net.train(mode)
        out = net(x, return_cams=True)
        torch.testing.assert_close(out["logits"], manual_logits(net, x, None))
        assert "attention" not in out
        # without attention the logits are the mean of the un-rectified CAMs
        raw = class_activation_maps(net.backbone(x)["final"], net.classifier.weight, relu=False)
        torch.testing.assert_close(out["logits"], raw.mean(dim=(2, 3)))


def test_gradient_flows_through_the_attention():
    net = tiny_net(mu=0.7).train()
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=torch.float32)
    loss = nn.MultiLabelSoftMarginLoss()(net(x), labels)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    # the classifier gets gradient through A as well as through the scores: detaching A changes it
    full = net.classifier.weight.grad.clone()
    net.zero_grad()
    feats = net.features(x)
    m = feats["final"]
    _, attention = dropout_attention(net.cams(m), 0.7)
    logits = net.classifier(F.adaptive_avg_pool2d(m * attention.detach(), 1)).flatten(1)
    nn.MultiLabelSoftMarginLoss()(logits, labels).backward()
    assert not torch.allclose(full, net.classifier.weight.grad)


def test_mu_validation_and_backbone_checks():
    net = tiny_net()
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="mu"):
            net.mu = bad
    net.mu = None
    assert net.mu is None
    with pytest.raises(ValueError, match="'bn7'"):
        PDAClassifier(TinyBackbone(), 3, feature_key="bn7")
    with pytest.raises(ValueError, match="num_classes"):
        PDAClassifier(TinyBackbone(), 0)


def test_resnet38_shapes_features_and_head():
    torch.manual_seed(0)
    net = PDAClassifier(ResNet38d(width=0.125), num_classes=4, mu=0.8).train()
    x = torch.randn(2, 3, 64, 64)
    out = net(x, return_cams=True, return_features=True)
    assert out["logits"].shape == (2, 4)
    assert out["cams"].shape == (2, 4, 8, 8) and out["attention"].shape == (2, 1, 8, 8)
    feats = out["features"]
    assert {n: tuple(feats[n].shape) for n in ("b4_3", "b4_5", "b5_2", "bn7")} == {
        "b4_3": (2, 64, 8, 8), "b4_5": (2, 64, 8, 8), "b5_2": (2, 128, 8, 8), "bn7": (2, 512, 8, 8)}
    # Grad-CAM hook points: head(features) is the network's output, and gradients reach every layer
    net.eval()
    feats = net.features(x)
    logits = net.head(feats)
    with torch.no_grad():
        torch.testing.assert_close(logits, net(x))
    grads = torch.autograd.grad(logits[:, 1].sum(), [feats[n] for n in ("b4_3", "b5_2", "bn7")])
    assert [g.shape[1] for g in grads] == [64, 128, 512]
    assert all(g.abs().sum() > 0 for g in grads)
    # the (logits, features) protocol of monai_wsseg.wsss.cam, and the same tensors by module name
    with torch.no_grad():
        logits2, feats2 = net.forward_with_features(x)
        torch.testing.assert_close(logits2, logits)
        modules = dict(net.named_modules())
        seen = {}
        handle = modules["backbone.bn7"].register_forward_hook(lambda m, i, o: seen.setdefault("bn7", o))
        net(x)
        handle.remove()
        torch.testing.assert_close(seen["bn7"], feats2["bn7"])
