"""ResNet-38d: named features, shapes and output stride, frozen BatchNorm, local weights."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from monai_wsseg.wsss.resnet38 import BLOCK_NAMES, DEFAULT_OUT_LAYERS, ResNet38d

WIDTH = 0.125


@pytest.fixture(scope="module")
def all_features() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = ResNet38d(width=WIDTH, out_layers=BLOCK_NAMES).eval()
    with torch.no_grad():
        return net(torch.randn(2, 3, 64, 64))


# (name, channels at width 1, downsampling factor) of every feature.
EXPECTED = {
    "conv1a": (64, 1), "b2": (128, 2), "b2_1": (128, 2), "b2_2": (128, 2),
    "b3": (256, 4), "b3_1": (256, 4), "b3_2": (256, 4),
    **{n: (512, 8) for n in ("b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5")},
    "b5": (1024, 8), "b5_1": (1024, 8), "b5_2": (1024, 8),
    "b6": (2048, 8), "b7": (4096, 8), "bn7": (4096, 8), "final": (4096, 8),
}


def test_every_feature_has_the_documented_shape(all_features):
    assert list(all_features) == list(BLOCK_NAMES)
    for name, (channels, stride) in EXPECTED.items():
        assert all_features[name].shape == (2, int(channels * WIDTH), 64 // stride, 64 // stride), name


def test_default_features_and_channel_table():
    net = ResNet38d(width=WIDTH)
    assert {"b4_3", "b4_5", "b5_2", "bn7", "final"} <= set(DEFAULT_OUT_LAYERS)
    assert net.out_channels == 512 and net.output_stride == 8
    assert net.feature_channels == {n: int(c * WIDTH) for n, (c, _) in EXPECTED.items()}
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 3, 40, 24))  # non-square, 5×3 output cells
    assert list(out) == list(DEFAULT_OUT_LAYERS)
    assert out["bn7"].shape == (1, 512, 5, 3)
    assert torch.equal(out["final"], torch.relu(out["bn7"]))  # final = ReLU(bn7), bn7 is pre-ReLU
    assert out["bn7"].min() < 0


def test_features_are_what_forward_hooks_see():
    torch.manual_seed(0)
    net = ResNet38d(width=WIDTH).eval()
    seen = {}
    for name in ("b4_3", "b5_2", "bn7"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
    with torch.no_grad():
        out = net(torch.randn(1, 3, 16, 16))
    assert len(seen) == 3
    for name in seen:
        assert out[name] is seen[name]


def test_dilation_not_stride_in_the_last_stages():
    net = ResNet38d(width=WIDTH)
    assert net.b5.conv_branch2a.dilation == (1, 1) and net.b5.conv_branch2b1.dilation == (2, 2)
    assert net.b5_2.conv_branch2a.dilation == (2, 2)
    assert net.b6.conv_branch2b1.dilation == (4, 4) and net.b7.conv_branch2b1.dilation == (4, 4)
    assert net.b6.dropout_2b1.p == 0.3 and net.b7.dropout_2b2.p == 0.5
    # b6 / b7 bottlenecks: out/4 → out/2 → out
    assert (net.b7.conv_branch2a.out_channels, net.b7.conv_branch2b1.out_channels) == (128, 256)


def test_width_one_parameter_count():
    # The paper's network: ~105 M parameters (built on the meta device: no memory, no time).
    with torch.device("meta"):
        net = ResNet38d(width=1.0)
    assert net.out_channels == 4096
    assert sum(p.numel() for p in net.parameters()) == 105_070_912


def test_early_stop_computes_only_what_is_asked():
    net = ResNet38d(width=WIDTH, out_layers=("b3_2",)).eval()
    calls = []
    net.b4.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = net(torch.randn(1, 3, 16, 16))
    assert list(out) == ["b3_2"] and not calls


def test_frozen_bn_stays_frozen():
    torch.manual_seed(0)
    net = ResNet38d(width=WIDTH, frozen_bn=True, frozen_layers=("conv1a", "b2")).train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    assert not net.conv1a.weight.requires_grad and not net.b2.conv_branch2a.weight.requires_grad
    assert net.b2_1.conv_branch2a.weight.requires_grad and net.training
    before = {k: v.clone() for k, v in net.state_dict().items() if "bn" in k}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net.train()  # a trainer calling train() again must not unfreeze the statistics
    out = net(torch.randn(2, 3, 16, 16) * 3 + 1)
    (out["final"].mean() + out["b4_3"].mean()).backward()
    opt.step()
    after = net.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert all(m.weight.grad is None for m in bns)


def test_unfrozen_bn_updates_statistics():
    net = ResNet38d(width=WIDTH).train()
    before = net.bn7.running_mean.clone()
    with torch.no_grad():
        net(torch.randn(2, 3, 16, 16))
    assert not torch.equal(before, net.bn7.running_mean)


def test_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    src = ResNet38d(width=WIDTH).eval()
    path = tmp_path / "resnet38_w0125.pt"
    torch.save(src.state_dict(), path)
    dst = ResNet38d(width=WIDTH, weights_path=path).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(dst(x)["final"], src(x)["final"])
    # A bundle checkpoint wrapper with a DDP prefix, plus an ImageNet-style classifier key, non-strict.
    wrapped = {"model": {f"module.{k}": v for k, v in src.state_dict().items()}}
    wrapped["model"]["module.fc8.weight"] = torch.zeros(1000, 512)
    torch.save(wrapped, tmp_path / "ckpt.pt")
    ResNet38d(width=WIDTH, weights_path=tmp_path / "ckpt.pt", weights_strict=False)
    with pytest.raises(ValueError, match=r"ckpt\.pt.*1 unexpected"):
        ResNet38d(width=WIDTH, weights_path=tmp_path / "ckpt.pt")


def test_weights_mismatch_names_the_file(tmp_path):
    path = tmp_path / "other_width.pt"
    torch.save(ResNet38d(width=0.25).state_dict(), path)
    with pytest.raises(ValueError, match=r"other_width\.pt.*width=0\.125.*another shape"):
        ResNet38d(width=WIDTH, weights_path=path)
    partial = {k: v for k, v in ResNet38d(width=WIDTH).state_dict().items() if not k.startswith("b7.")}
    torch.save(partial, tmp_path / "no_b7.pt")
    with pytest.raises(ValueError, match=r"no_b7\.pt.*missing.*b7\."):
        ResNet38d(width=WIDTH, weights_path=tmp_path / "no_b7.pt", weights_strict=False)
    with pytest.raises(FileNotFoundError, match=re.escape("absent.pt")):
        ResNet38d(width=WIDTH, weights_path=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=re.escape("junk.pt")):
        ResNet38d(width=WIDTH, weights_path=tmp_path / "junk.pt")


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown layer"):
        ResNet38d(width=WIDTH, out_layers=("b8",))
    with pytest.raises(ValueError, match="width"):
        ResNet38d(width=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ResNet38d(width=WIDTH)(torch.randn(3, 32, 32))
