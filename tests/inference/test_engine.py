"""Whole-slide inference: exact stitching, tissue-only reading, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.inference.tiles import plan_tiles
from monai_wsseg.wsi.slide import Slide, SlideReadError, open_slide
from monai_wsseg.wsi.tissue import TissueMask
from tests.conftest import real_file

STRIDE, HALO = 8, 16


class KnownFCN(nn.Module):
    """A fixed fully convolutional function: 9x9 conv then 8x8 average pool (receptive radius < 16 px)."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, channels, 9, padding=4)
        self.pool = nn.AvgPool2d(STRIDE)

    def forward(self, x):
        return self.pool(self.conv(x))


def full_mask(slide: Slide) -> TissueMask:
    w, h = slide.dimensions
    return TissueMask(np.ones((h // 10 + 1, w // 10 + 1), bool), mpp=slide.mpp * 10, scale=(10.0, 10.0))


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_stitched_map_equals_whole_image_function(slide_path, overlap):
    slide = open_slide(slide_path)
    net = KnownFCN()
    inferer = WSIInferer(
        net, mpp=0.5, stride=STRIDE, tile=128, halo=HALO, overlap=overlap, num_classes=2,
        activation="none", num_workers=0, progress=False, precision="fp32",  # exact stitching needs exact maths
    )
    smap = inferer(slide, tissue=full_mask(slide))
    map_w, map_h = 125, 88  # ceil(1000 / 8), ceil(700 / 8)
    assert smap.probabilities.shape == (2, map_h, map_w)
    assert smap.downsample == STRIDE
    # Reference: the same function over the whole slide, padded with white glass by the halo.
    image = slide.read_region((-HALO, -HALO), (map_w * STRIDE + 2 * HALO, map_h * STRIDE + 2 * HALO))
    batch = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = net(inferer.preprocess(batch))[0, :, HALO // STRIDE : -HALO // STRIDE, HALO // STRIDE : -HALO // STRIDE]
    assert np.isfinite(smap.probabilities).all()
    np.testing.assert_allclose(smap.probabilities, ref.numpy(), atol=1e-5, rtol=0)


def test_tiles_without_tissue_are_never_read(slide_path, monkeypatch):
    slide = open_slide(slide_path)
    mask = np.zeros((70, 100), bool)
    mask[10:30, 10:40] = True  # level-0 x 100..400, y 100..300
    tissue = TissueMask(mask, mpp=5.0, scale=(10.0, 10.0))
    reads = []
    original = Slide.read_region

    def counting(self, location, size, mpp=None):
        reads.append(tuple(location))
        return original(self, location, size, mpp)

    monkeypatch.setattr(Slide, "read_region", counting)
    inferer = WSIInferer(KnownFCN(1), mpp=0.5, stride=STRIDE, tile=128, halo=HALO, activation="sigmoid",
                         num_workers=0, progress=False)
    smap = inferer(slide, tissue=tissue)
    plan = inferer.plan(slide, tissue)
    assert len(reads) == len(plan) < 20  # the full slide has 48 tiles
    computed = smap.computed
    assert computed[100 // 8, 200 // 8] and not computed[600 // 8, 900 // 8]
    assert np.nanmin(smap.probabilities) >= 0 and np.nanmax(smap.probabilities) <= 1


def test_plan_snaps_to_a_stored_level_and_keeps_integer_downsample(slide_path):
    slide = open_slide(slide_path)
    plan = plan_tiles(slide, mpp=1.02, stride=16, tile=256, halo=32)  # level 1 stores 1.0 um/px
    assert plan.mpp == pytest.approx(1.0) and plan.downsample == 32
    plan = plan_tiles(slide, mpp=0.7, stride=16, tile=256)  # no level near: mpp adjusted to an integer map
    assert plan.downsample == 22 and plan.mpp == pytest.approx(22 * 0.5 / 16)
    with pytest.raises(ValueError, match=r"slide\.tif: tile .* multiples of the network stride"):
        plan_tiles(slide, mpp=0.5, stride=16, tile=100)
    with pytest.raises(ValueError, match="overlap must be in"):
        plan_tiles(slide, mpp=0.5, stride=16, tile=128, overlap=1.0)


def test_wrong_network_stride_or_channels_names_the_slide(slide_path):
    slide = open_slide(slide_path)
    inferer = WSIInferer(KnownFCN(2), mpp=0.5, stride=16, tile=128, halo=HALO, num_classes=2,
                         num_workers=0, progress=False)
    with pytest.raises(ValueError, match=r"slide\.tif: the network maps a 160 px window to .*stride=16"):
        inferer(slide, tissue=full_mask(slide))
    inferer = WSIInferer(KnownFCN(2), mpp=0.5, stride=STRIDE, tile=128, halo=HALO, num_classes=3,
                         num_workers=0, progress=False)
    with pytest.raises(ValueError, match=r"expected \(3, 20, 20\)"):
        inferer(slide, tissue=full_mask(slide))


def test_halo_larger_than_tile_is_refused():
    with pytest.raises(ValueError, match=r"tile .* is smaller than the receptive-field halo"):
        WSIInferer(KnownFCN(), mpp=0.5, stride=8, tile=64, halo=128)


def test_slide_without_tissue_gives_empty_maps_and_a_warning(slide_path):
    slide = open_slide(slide_path)
    empty = TissueMask(np.zeros((70, 100), bool), mpp=5.0, scale=(10.0, 10.0))
    inferer = WSIInferer(KnownFCN(1), mpp=0.5, stride=STRIDE, tile=128, halo=HALO, num_workers=0, progress=False)
    with pytest.warns(UserWarning, match="slide.tif: no tissue found"):
        smap = inferer(slide, tissue=empty)
    assert smap.probabilities.shape == (1, 88, 125) and not smap.computed.any()


def test_unreadable_windows_become_no_data(slide_path, monkeypatch):
    slide = open_slide(slide_path)
    original = Slide.read_region

    def flaky(self, location, size, mpp=None):
        if tuple(location) == (-HALO, -HALO):
            raise SlideReadError(f"{self.path}: cannot read region (corrupt tile)")
        return original(self, location, size, mpp)

    monkeypatch.setattr(Slide, "read_region", flaky)
    inferer = WSIInferer(KnownFCN(1), mpp=0.5, stride=STRIDE, tile=128, halo=HALO, num_workers=0, progress=False)
    smap = inferer(slide, tissue=full_mask(slide))
    assert smap.unread == [(-HALO, -HALO, 160, 160)]
    assert not smap.computed[:16, :16].any() and smap.computed[16:, 16:].all()


def test_real_slide_end_to_end_with_a_random_resnet():
    from torchvision.models import resnet18

    path = real_file("CMU-1-Small-Region.svs")
    torch.manual_seed(0)
    body = nn.Sequential(*list(resnet18().children())[:-2], nn.Conv2d(512, 1, 1))
    inferer = WSIInferer(body, mpp=1.0, stride=32, tile=256, halo=64, batch_size=4, num_workers=1, progress=False)
    slide = open_slide(path)
    plan = inferer.plan(slide)
    smap = inferer(slide)
    assert smap.downsample == 64  # 1.0 um/px read from 0.499 um/px level 0, 32 px per cell
    assert smap.probabilities.shape == (1, -(-slide.dimensions[1] // 64), -(-slide.dimensions[0] // 64))
    n_all = -(-smap.probabilities.shape[1] // 8) * -(-smap.probabilities.shape[2] // 8)
    assert 0 < len(plan) < n_all  # background tiles are skipped
    values = smap.probabilities[:, smap.computed]
    assert values.size and np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
