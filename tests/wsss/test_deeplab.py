"""DeepLabV3+: output shapes, output stride, local ImageNet weights and their errors."""

from __future__ import annotations

import re

import pytest
import torch
from torchvision import models

from monai_wsseg.wsss.deeplab import DeepLabV3Plus

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def net18() -> DeepLabV3Plus:
    """One resnet18 DeepLabV3+ (OS 16) shared by the tests: building it is most of their cost."""
    torch.manual_seed(0)
    return DeepLabV3Plus(num_classes=4, backbone="resnet18", output_stride=16).eval()


@pytest.mark.parametrize("stride", [16, 8])
def test_resnet18_shapes_and_output_stride(stride, net18):
    net = net18 if stride == 16 else DeepLabV3Plus(num_classes=4, backbone="resnet18", output_stride=8).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        low = net.stem(x)
        high = net.encoder(low)
        out = net(x)
    assert low.shape == (2, 64, 16, 16)  # decoder taps layer1 at stride 4
    assert high.shape == (2, 512, 64 // stride, 64 // stride)
    assert net.low_level(low).shape[1] == 48
    assert out.shape == (2, 4, 64, 64)
    rates = [branch[0].dilation[0] for branch in net.aspp.branches[1:]]
    assert rates == ([6, 12, 18] if stride == 16 else [12, 24, 36])


@pytest.mark.parametrize("backbone", ["resnet34", "resnet50", "resnet101"])
def test_other_backbones_and_sizes_not_a_multiple_of_the_stride(backbone):
    # Shape inference on the meta device: no weights initialised, no compute, so big backbones are cheap.
    with torch.device("meta"):
        net = DeepLabV3Plus(num_classes=3, backbone=backbone).eval()
        out = net(torch.randn(1, 3, 70, 90))
        high = net.encoder(net.stem(torch.randn(1, 3, 64, 64)))
    assert out.shape == (1, 3, 70, 90)
    assert high.shape == (1, 512 if backbone == "resnet34" else 2048, 4, 4)


def test_odd_input_size_resnet18(net18):
    with torch.no_grad():
        assert net18(torch.randn(1, 3, 50, 66)).shape == (1, 4, 50, 66)


def test_trains_and_parameter_groups_partition_the_network(net18):
    net = net18.train()
    try:
        out = net(torch.randn(2, 3, 32, 32))  # small: BatchNorm still sees 2 values per channel when pooled
        out.mean().backward()
        assert net.classifier.weight.grad is not None and net.stem[0].weight.grad is not None
    finally:
        net.eval().zero_grad(set_to_none=True)
    backbone, head = list(net.backbone_parameters()), list(net.head_parameters())
    ids = [id(p) for p in backbone + head]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))


def test_pretrained_weights_from_a_local_file(tmp_path):
    reference = models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = DeepLabV3Plus(2, backbone="resnet18", pretrained_path=path)
    torch.testing.assert_close(net.stem[0].weight, reference.conv1.weight)
    torch.testing.assert_close(net.encoder[2][1].conv2.weight, reference.layer4[1].conv2.weight)
    # A {"state_dict": ...} wrapper without fc is fine too.
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    DeepLabV3Plus(2, backbone="resnet18", pretrained_path=tmp_path / "wrapped.pth")


def test_pretrained_mismatch_names_the_file(tmp_path):
    with torch.device("meta"):  # resnet34's keys and shapes without initialising 21 M weights
        shapes = {k: (v.shape, v.dtype) for k, v in models.resnet34(weights=None).state_dict().items()}
    torch.save({k: torch.zeros(s, dtype=d) for k, (s, d) in shapes.items()}, tmp_path / "r34.pth")
    with pytest.raises(ValueError, match=r"r34\.pth: not resnet18 ImageNet weights \(unexpected: layer"):
        DeepLabV3Plus(2, backbone="resnet18", pretrained_path=tmp_path / "r34.pth")
    state = models.resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)  # a grey-scale stem: right keys, wrong shape
    torch.save(state, tmp_path / "grey.pth")
    with pytest.raises(ValueError, match=r"grey\.pth: .*wrong shape: conv1\.weight"):
        DeepLabV3Plus(2, backbone="resnet18", pretrained_path=tmp_path / "grey.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth: cannot be read"):
        DeepLabV3Plus(2, backbone="resnet18", pretrained_path=tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match=re.escape("absent.pth")):
        DeepLabV3Plus(2, backbone="resnet18", pretrained_path=tmp_path / "absent.pth")


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown backbone"):
        DeepLabV3Plus(2, backbone="vgg16")
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        DeepLabV3Plus(2, backbone="resnet18", output_stride=32)
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3Plus(0, backbone="resnet18")
    with pytest.raises(ValueError, match="head_channels"):
        DeepLabV3Plus(2, backbone="resnet18", head_channels=0)
    net = DeepLabV3Plus(2, backbone="resnet18")
    with pytest.raises(ValueError, match=r"expected input \(B, 3, H, W\)"):
        net(torch.randn(1, 1, 64, 64))


def test_a_narrow_head_keeps_the_shapes_and_sheds_the_decoder_cost():
    wide, narrow = DeepLabV3Plus(3, backbone="resnet18"), DeepLabV3Plus(3, backbone="resnet18", head_channels=64)
    assert narrow.classifier.in_channels == 64 and narrow.decoder[0][0].in_channels == 64 + 48
    assert narrow(torch.randn(2, 3, 64, 96)).shape == (2, 3, 64, 96)

    def decoder(n):
        return sum(p.numel() for p in n.decoder.parameters())

    assert decoder(narrow) < decoder(wide) / 10  # the 3×3 convs at H/4 shrink with the square of the width
