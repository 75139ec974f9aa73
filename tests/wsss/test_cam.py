"""Batched multi-layer Grad-CAM against a plain per-image, per-class autograd loop; hooks; CAM → mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from monai_wsseg.wsss.cam import (
    HookedForward,
    cams_to_mask,
    check_layer_names,
    multi_layer_gradcam,
    normalise_cams,
)

LAYERS = ["b4_3", "b5_2", "bn7"]


class TinyCAMNet(nn.Module):
    """A ResNet38-shaped toy: named stages b4_3, b5_2 (dilated), bn7, then GAP + 1×1 classifier (no bias)."""

    def __init__(self, n_classes: int = 4, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU())
        self.b4_3 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU())
        self.b5_2 = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), nn.BatchNorm2d(2 * w))
        self.conv7 = nn.Conv2d(2 * w, 4 * w, 1)
        self.bn7 = nn.BatchNorm2d(4 * w)
        self.fc8 = nn.Conv2d(4 * w, n_classes, 1, bias=False)
        # Non-trivial running statistics, so eval-mode BatchNorm is a real affine map per channel.
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b4_3(self.stem(x))
        x = F.relu(self.b5_2(x))
        x = F.relu(self.bn7(self.conv7(x)))
        return self.fc8(x.mean(dim=(2, 3), keepdim=True)).flatten(1)


def _net(n_classes: int = 4) -> TinyCAMNet:
    return TinyCAMNet(n_classes).eval()


def _batch(b: int = 5, c: int = 4, size: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, size, size, generator=g)
    labels = (torch.rand(b, c, generator=g) < 0.5).float()
    labels[0] = torch.tensor([1.0, 0, 1, 1])[:c]  # several classes
    labels[1] = 0
    labels[1, c - 1] = 1  # one class only
    return images, labels


def _reference(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layers: list[str], *,
               normalise: str, relu: bool) -> dict[str, torch.Tensor]:
    """One image, one class at a time, as the reference code does: its own forward hooks, a fresh forward
    per (image, class), torch.autograd.grad of that single logit, then plain per-image normalisation."""
    modules = dict(model.named_modules())
    b, c = labels.shape
    size = images.shape[-2:]
    out = {layer: torch.zeros(b, c, *size) for layer in layers}
    for i in range(b):
        for k in range(c):
            if labels[i, k] < 0.5:
                continue
            acts: dict[str, torch.Tensor] = {}
            handles = [modules[n].register_forward_hook(lambda _m, _in, o, n=n, acts=acts: acts.__setitem__(n, o))
                       for n in layers]
            try:
                logit = model(images[i : i + 1])[0, k]
            finally:
                for h in handles:
                    h.remove()
            grads = torch.autograd.grad(logit, [acts[n] for n in layers])
            for n, g in zip(layers, grads, strict=True):
                weights = g[0].mean(dim=(1, 2))
                cam = (weights[:, None, None] * acts[n][0]).sum(0).detach()
                if relu:
                    cam = cam.clamp_min(0)
                out[n][i, k] = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    for n in layers:
        for i in range(b):
            present = labels[i] > 0.5
            maps = out[n][i]
            if normalise == "global":
                sel = maps[present]
                lo = sel.min() if not relu else torch.tensor(0.0)
                span = sel.max() - lo
                maps[present] = (sel - lo) / span if span > 0 else torch.zeros_like(sel)
            elif normalise == "per_class":
                for k in torch.nonzero(present).flatten():
                    lo = maps[k].min() if not relu else torch.tensor(0.0)
                    span = maps[k].max() - lo
                    # a class without positive evidence anywhere (all 0 after ReLU) stays 0
                    maps[k] = (maps[k] - lo) / span if span > 0 else torch.zeros_like(maps[k])
    return out


# ------------------------------------------------------------------------------- batched == loop
@pytest.mark.parametrize("normalise", ["none", "global", "per_class"])
@pytest.mark.parametrize("relu", [True, False])
def test_batched_equals_per_image_loop(normalise: str, relu: bool) -> None:
    model = _net()
    images, labels = _batch()
    got = multi_layer_gradcam(HookedForward(model, LAYERS), images, labels, LAYERS, normalise=normalise, relu=relu)
    want = _reference(model, images, labels, LAYERS, normalise=normalise, relu=relu)
    assert list(got) == LAYERS
    for layer in LAYERS:
        assert got[layer].shape == (5, 4, 40, 40) and got[layer].dtype == torch.float32
        assert not got[layer].requires_grad
        scale = max(1.0, want[layer].abs().max().item())
        torch.testing.assert_close(got[layer], want[layer], atol=1e-5 * scale, rtol=0)
        assert got[layer].abs().sum() > 0  # not trivially zero


def test_one_forward_per_batch_and_one_backward_per_class_rank() -> None:
    model = _net()
    images, _ = _batch()
    # all 4 classes occur in the batch, but no image has more than 2: two backwards serve everything
    labels = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]]).float()
    hooked = HookedForward(model, LAYERS)
    calls = {"forward": 0, "backward": 0}

    def fwf(x: torch.Tensor):
        calls["forward"] += 1
        logits, feats = hooked(x)
        logits.register_hook(lambda g: calls.__setitem__("backward", calls["backward"] + 1))
        return logits, feats

    got = multi_layer_gradcam(fwf, images, labels, LAYERS, normalise="none")
    assert calls == {"forward": 1, "backward": 2}
    want = _reference(model, images, labels, LAYERS, normalise="none", relu=True)
    for layer in LAYERS:
        torch.testing.assert_close(got[layer], want[layer], atol=1e-5 * max(1.0, want[layer].abs().max().item()),
                                   rtol=0)
    assert torch.all(got["bn7"][4] == 0)  # an image without labels has no maps


def test_absent_classes_are_zero_and_out_size() -> None:
    model = _net()
    images, labels = _batch()
    cams = multi_layer_gradcam(HookedForward(model, LAYERS), images, labels, LAYERS[:2], out_size=(24, 30))
    for cam in cams.values():
        assert cam.shape == (5, 4, 24, 30)
        absent = labels < 0.5
        assert torch.all(cam[absent] == 0)
        assert torch.all(cam >= 0) and torch.all(cam <= 1 + 1e-6)


def test_global_and_per_class_normalisation() -> None:
    model = _net()
    images, labels = _batch()
    hooked = HookedForward(model, LAYERS)
    raw = multi_layer_gradcam(hooked, images, labels, LAYERS, normalise="none")["bn7"]
    glob = multi_layer_gradcam(hooked, images, labels, LAYERS, normalise="global")["bn7"]
    per = multi_layer_gradcam(hooked, images, labels, LAYERS, normalise="per_class")["bn7"]
    for i in range(labels.shape[0]):
        present = labels[i] > 0.5
        if raw[i].max() > 0:
            # global: one factor per image, so the image max is 1 and class ratios are kept
            assert glob[i].max() == pytest.approx(1.0, abs=1e-6)
            torch.testing.assert_close(glob[i], raw[i] / raw[i].max(), atol=1e-6, rtol=0)
            assert torch.equal(glob[i].argmax(0)[raw[i].amax(0) > 0], raw[i].argmax(0)[raw[i].amax(0) > 0])
        for k in torch.nonzero(present).flatten():
            if raw[i, k].max() > 0:
                assert per[i, k].max() == pytest.approx(1.0, abs=1e-6)


def test_normalisation_is_nan_free_on_zero_maps() -> None:
    cams = torch.zeros(2, 3, 4, 4)
    present = torch.tensor([[True, False, True], [False, False, False]])
    for relu in (True, False):
        for mode in ("global", "per_class"):
            out = normalise_cams(cams, present, mode, relu=relu)
            assert torch.isfinite(out).all() and torch.all(out == 0)
    # tiny but real scales keep their exact ratios (no additive eps)
    small = torch.zeros(1, 2, 2, 2)
    small[0, 0, 0, 0], small[0, 1, 1, 1] = 2e-12, 1e-12
    out = normalise_cams(small, torch.tensor([[True, True]]), "global")
    assert out[0, 0, 0, 0] == pytest.approx(1.0) and out[0, 1, 1, 1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="normalise"):
        normalise_cams(small, torch.tensor([[True, True]]), "max")  # type: ignore[arg-type]


def test_frozen_network_and_no_grad_context() -> None:
    model = _net()
    for p in model.parameters():
        p.requires_grad_(False)
    images, labels = _batch(b=2)
    with torch.no_grad():  # e.g. called from an evaluator
        cams = multi_layer_gradcam(HookedForward(model, LAYERS), images, labels, LAYERS)
    assert all(c.abs().sum() > 0 for c in cams.values())
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        multi_layer_gradcam(HookedForward(model, LAYERS), images, labels, LAYERS)


def test_shape_and_layer_errors() -> None:
    model = _net()
    images, labels = _batch(b=2)
    hooked = HookedForward(model, LAYERS)
    with pytest.raises(ValueError, match="4 class logits but labels have 3"):
        multi_layer_gradcam(hooked, images, labels[:, :3], LAYERS)
    with pytest.raises(ValueError, match="labels must be"):
        multi_layer_gradcam(hooked, images, labels[:1], LAYERS)
    with pytest.raises(ValueError, match="'b9' is not among the network's features"):
        multi_layer_gradcam(hooked, images, labels, ["b9"])

    def detached(x: torch.Tensor):
        logits, feats = hooked(x)
        return logits, {k: v.detach() for k, v in feats.items()}

    with pytest.raises(ValueError, match="not part of the autograd graph"):
        multi_layer_gradcam(detached, images, labels, LAYERS)


# --------------------------------------------------------------------------------------- hooks
def test_hook_adapter_captures_the_named_modules() -> None:
    model = _net()
    images, _ = _batch(b=2)
    logits, feats = HookedForward(model, LAYERS)(images)
    with torch.no_grad():
        s = model.stem(images)
        b43 = model.b4_3(s)
        b52 = model.b5_2(b43)
        bn7 = model.bn7(model.conv7(F.relu(b52)))
    torch.testing.assert_close(feats["b4_3"], b43)
    torch.testing.assert_close(feats["b5_2"], b52)
    torch.testing.assert_close(feats["bn7"], bn7)
    torch.testing.assert_close(logits, model(images))
    assert all(not m._forward_hooks for m in model.modules())  # nothing left behind
    # nested names work too
    _, feats = HookedForward(model, ["b4_3.1"])(images)
    assert feats["b4_3.1"].shape == b43.shape


def test_hook_adapter_errors() -> None:
    model = _net()
    with pytest.raises(ValueError, match=r"'b4_4' is not a submodule.*did you mean 'b4_3'"):
        HookedForward(model, ["b4_4"])
    with pytest.raises(ValueError, match="sequence of module names"):
        check_layer_names(model, "bn7")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        check_layer_names(model, [])
    with pytest.raises(ValueError, match="repeated"):
        check_layer_names(model, ["bn7", "bn7"])

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.head = nn.Conv2d(3, 2, 1)
            self.unused = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(self.conv(x)))  # dense logits: averaged by the adapter

    net = Shared().eval()
    x = torch.randn(1, 3, 8, 8)
    logits, _ = HookedForward(net, ["head"])(x)
    assert logits.shape == (1, 2)
    with pytest.raises(ValueError, match="ran 2 times"):
        HookedForward(net, ["conv"])(x)
    with pytest.raises(ValueError, match="did not run"):
        HookedForward(net, ["unused"])(x)


# ----------------------------------------------------------------------------------- CAM → mask
def test_cams_to_mask_rule() -> None:
    cams = torch.zeros(2, 3, 2, 3)
    # image 0: classes 1 and 2 present; class 0 absent but huge — must never win
    cams[0, 0] = 9.0
    cams[0, 1] = torch.tensor([[0.2, 0.0, 0.7], [0.0, 0.5, 0.1]])
    cams[0, 2] = torch.tensor([[0.1, 0.0, 0.9], [0.3, 0.5, 0.0]])
    labels = torch.tensor([[0, 1, 1], [1, 0, 0]])
    mask = cams_to_mask(cams, labels=labels)
    assert mask.dtype == torch.int64 and mask.shape == (2, 2, 3)
    # ties (0/0 and 0.5/0.5) go to the lowest present class, never to absent class 0
    assert mask[0].tolist() == [[1, 1, 2], [2, 1, 1]]
    assert torch.all(mask[1] == 0)  # one present class: everything is that class

    bg = torch.zeros(2, 2, 3, dtype=torch.bool)
    bg[0, 0, 0] = bg[1, 1, 2] = True
    mask = cams_to_mask(cams, bg, 3, labels=labels)
    assert mask[0, 0, 0] == 3 and mask[1, 1, 2] == 3 and (mask == 3).sum() == 2

    # without labels: candidates are the non-zero maps of each image
    cams2 = torch.zeros(1, 3, 1, 2)
    cams2[0, 2] = torch.tensor([[0.0, 1.0]])
    assert cams_to_mask(cams2).tolist() == [[[2, 2]]]

    # an image without any present class: background index, or an error without one
    empty = torch.tensor([[0, 0, 0], [1, 0, 0]])
    assert torch.all(cams_to_mask(cams, None, 3, labels=empty)[0] == 3)
    with pytest.raises(ValueError, match="no present class"):
        cams_to_mask(cams, labels=empty)
    with pytest.raises(ValueError, match="background_index"):
        cams_to_mask(cams, bg, None, labels=labels)
    with pytest.raises(ValueError, match="background must be"):
        cams_to_mask(cams, bg[:, :1], 3, labels=labels)


def test_masks_from_batched_cams_match_loop_masks() -> None:
    model = _net()
    images, labels = _batch()
    for normalise in ("global", "per_class"):
        got = multi_layer_gradcam(HookedForward(model, LAYERS), images, labels, LAYERS, normalise=normalise)
        want = _reference(model, images, labels, LAYERS, normalise=normalise, relu=True)
        for layer in LAYERS:
            m_got = cams_to_mask(got[layer], labels=labels)
            m_want = cams_to_mask(want[layer], labels=labels)
            # float noise may flip exact near-ties only
            assert (m_got != m_want).float().mean() < 1e-3
            for i in range(labels.shape[0]):
                assert set(m_got[i].unique().tolist()) <= set(torch.nonzero(labels[i]).flatten().tolist())


# ------------------------------------------------------------------------- with paper B's classifier
def test_with_pda_classifier_protocol_and_hooks_agree_with_the_loop() -> None:
    """PDAClassifier over a small ResNet38d: its ``forward_with_features`` and forward hooks on
    ``backbone.<layer>`` give the per-image loop's Grad-CAMs at b4_3, b5_2 and bn7."""
    pda = pytest.importorskip("monai_wsseg.wsss.pda")
    resnet38 = pytest.importorskip("monai_wsseg.wsss.resnet38")
    torch.manual_seed(0)
    net = pda.PDAClassifier(resnet38.ResNet38d(width=0.0625), num_classes=4, mu=0.7).eval()
    # Non-trivial running statistics, so eval-mode BatchNorm is a real affine map.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
    images, labels = _batch(b=3, size=32)
    hooked_names = [f"backbone.{n}" for n in LAYERS]
    want = _reference(net, images, labels, hooked_names, normalise="global", relu=True)
    by_protocol = multi_layer_gradcam(net.forward_with_features, images, labels, LAYERS)
    by_hooks = multi_layer_gradcam(HookedForward(net, hooked_names), images, labels, hooked_names)
    for layer, hooked in zip(LAYERS, hooked_names, strict=True):
        assert by_protocol[layer].shape == (3, 4, 32, 32)
        torch.testing.assert_close(by_protocol[layer], want[hooked], atol=1e-5, rtol=0)
        torch.testing.assert_close(by_hooks[hooked], want[hooked], atol=1e-5, rtol=0)
        assert by_protocol[layer].amax() > 0
