"""The fully convolutional ResNet: output stride, patch = mean of dense logits, weights loading."""

from __future__ import annotations

import re

import pytest
import torch
from torchvision import models

from monai_wsseg.networks.fcn import ResNetFCN


@pytest.mark.parametrize("backbone,stride", [("resnet18", 32), ("resnet18", 16), ("resnet50", 16)])
def test_output_stride(backbone, stride):
    net = ResNetFCN(backbone, num_classes=2, output_stride=stride).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 224, 256))
    assert out.shape == (1, 2, 224 // stride, 256 // stride)


def test_patch_logit_equals_classifier_on_pooled_features():
    torch.manual_seed(0)
    net = ResNetFCN("resnet18", num_classes=3, output_stride=32).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled = net.features(x).mean(dim=(2, 3))
        expected = pooled @ net.classifier.weight[:, :, 0, 0].T + net.classifier.bias
        torch.testing.assert_close(net.patch_logits(x), expected, rtol=1e-4, atol=1e-5)


def test_pretrained_weights_from_a_local_file(tmp_path):
    reference = models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = ResNetFCN("resnet18", pretrained_path=path)
    torch.testing.assert_close(net.features[0].weight, reference.conv1.weight)
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=re.escape("bad.pth: not resnet18 weights")):
        ResNetFCN("resnet18", pretrained_path=tmp_path / "bad.pth")


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown backbone"):
        ResNetFCN("vgg16")
    with pytest.raises(ValueError, match="output_stride must be 16 or 32"):
        ResNetFCN("resnet18", output_stride=8)


def test_layer_norm_has_no_batch_or_size_dependence():
    torch.manual_seed(0)
    net = ResNetFCN("resnet18", output_stride=16, norm="layer").train()
    x = torch.randn(4, 3, 64, 64)
    alone = net(x[:1])
    together = net(x)[:1]
    assert torch.allclose(alone, together, atol=1e-5)
    assert torch.allclose(net.eval()(x[:1]), alone, atol=1e-5)  # training and inference agree
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(ValueError, match="norm must be"):
        ResNetFCN("resnet18", norm="group")


def test_layer_norm_takes_batchnorm_pretrained_weights(tmp_path):
    from torchvision import models

    path = tmp_path / "r18.pth"
    torch.save(models.resnet18(weights=None).state_dict(), path)
    net = ResNetFCN("resnet18", pretrained_path=path, norm="layer")
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1, 4, 4)
