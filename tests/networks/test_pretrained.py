"""ImageNet weights by name: cache, soft default, offline error; never the network in tests."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from torchvision import models

from monai_wsseg.networks.fcn import ResNetFCN
from monai_wsseg.networks.pretrained import imagenet_cache_path, imagenet_url, resolve_pretrained


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub folder; downloads fail as they do offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path


def test_names_resolve_to_torchvision_urls_and_the_cache(hub):
    assert imagenet_url("resnet18").startswith("https://download.pytorch.org/models/resnet18-")
    assert imagenet_cache_path("resnet18") == hub / "checkpoints" / imagenet_url("resnet18").rsplit("/", 1)[1]
    with pytest.raises(ValueError, match="no ImageNet weights are known for backbone 'resnet7'"):
        imagenet_url("resnet7")


def test_offline_imagenet_names_the_file_to_fetch(hub):
    cached = imagenet_cache_path("resnet18")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{cached}: ImageNet weights of resnet18 not found")) as info:
        resolve_pretrained("imagenet", None, "resnet18")
    assert imagenet_url("resnet18") in str(info.value) and "OSError" in str(info.value)
    assert not cached.exists()


def test_if_cached_is_random_init_with_a_warning_then_the_cached_weights(hub, caplog):
    with caplog.at_level(logging.WARNING, logger="monai_wsseg.networks.pretrained"):
        assert resolve_pretrained("imagenet_if_cached", None, "resnet18") is None
    assert "random initialisation" in caplog.text
    cached = imagenet_cache_path("resnet18")
    cached.parent.mkdir(parents=True)
    reference = models.resnet18(weights=None)
    torch.save(reference.state_dict(), cached)
    assert resolve_pretrained("imagenet_if_cached", None, "resnet18") == cached
    assert resolve_pretrained("imagenet", None, "resnet18") == cached
    net = ResNetFCN("resnet18", output_stride=32, pretrained="imagenet")
    assert torch.equal(net.features[0].weight, reference.conv1.weight)


def test_choices_and_the_local_file(hub, tmp_path):
    assert resolve_pretrained(None, None, "resnet18") is None
    assert resolve_pretrained(None, tmp_path / "w.pth", "resnet18") == tmp_path / "w.pth"
    assert resolve_pretrained("imagenet_if_cached", tmp_path / "w.pth", "resnet18") == tmp_path / "w.pth"
    with pytest.raises(ValueError, match="not both"):
        resolve_pretrained("imagenet", tmp_path / "w.pth", "resnet18")
    with pytest.raises(ValueError, match="pretrained must be one of imagenet, imagenet_if_cached or null"):
        resolve_pretrained("ImageNet21k", None, "resnet18")


def test_the_segmenter_takes_the_same_names(hub):
    from monai_wsseg.wsss.deeplab import DeepLabV3Plus

    with pytest.raises(FileNotFoundError, match=re.escape("fetch https://download.pytorch.org/models/resnet18-")):
        DeepLabV3Plus(4, backbone="resnet18", pretrained="imagenet", head_channels=8)
