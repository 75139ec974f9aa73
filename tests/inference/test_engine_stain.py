"""WSIInferer's stain-normalisation hook: fitted once per slide, applied to every tile before preprocess."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy.ndimage import zoom
from torch import nn

from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.wsi.slide import Slide, open_slide
from monai_wsseg.wsi.stain import MacenkoNormalizer, ReinhardNormalizer, od_to_rgb
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from monai_wsseg.wsi.tissue import TissueMask

STRIDE, HALO = 8, 16
H_OD, E_OD = np.array([0.65, 0.70, 0.29]), np.array([0.07, 0.99, 0.11])


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def he_image(height: int, width: int, seed: int, stains=(H_OD, E_OD)) -> np.ndarray:
    """Smooth Beer–Lambert H&E-like RGB ``(height, width, 3)`` uint8, with a strip of glass on the right."""
    rng = np.random.default_rng(seed)
    coarse = rng.gamma(2.0, 0.25, size=(height // 16 + 2, width // 16 + 2, 2))
    conc = zoom(coarse, (16, 16, 1), order=1)[:height, :width]
    conc[:, int(width * 0.8) :] = 0.0
    s = np.stack([v / np.linalg.norm(v) for v in stains])
    return od_to_rgb(conc.reshape(-1, 2) @ s, uint8=True).reshape(height, width, 3)


class TinyFCN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 5, padding=2)
        self.pool = nn.AvgPool2d(STRIDE)

    def forward(self, x):
        return self.pool(self.conv(x))


class Counting:
    """Wraps a normaliser: counts ``for_slide`` calls and keeps the pixels and transform of the last one."""

    def __init__(self, inner=None) -> None:
        self.inner, self.calls, self.pixels, self.tiles = inner, 0, None, 0

    def for_slide(self, pixels: np.ndarray):
        self.calls += 1
        self.pixels = pixels
        # No inner normaliser: the reference is the slide's own, so the map is exactly the identity.
        inner = self.inner or ReinhardNormalizer(ReinhardNormalizer.fit(pixels))
        transform = inner.for_slide(pixels)

        def counted(batch):
            self.tiles += len(batch)
            return transform(batch)

        return counted


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("stain_engine") / "slide.tif"
    write_pyramidal_tiff(path, he_image(320, 400, seed=1), 0.5, quality=95)
    return path


def full_mask(slide: Slide) -> TissueMask:
    w, h = slide.dimensions
    return TissueMask(np.ones((h // 16 + 1, w // 16 + 1), bool), mpp=slide.mpp * 16, scale=(16.0, 16.0))


def inferer(**kwargs) -> WSIInferer:
    return WSIInferer(TinyFCN(), mpp=0.5, stride=STRIDE, tile=64, halo=HALO, activation="sigmoid",
                      batch_size=3, num_workers=0, progress=False, **kwargs)


def test_identity_normaliser_gives_the_same_map(slide_path):
    slide = open_slide(slide_path)
    plain = inferer()(slide, tissue=full_mask(slide))
    counting = Counting()
    normed = inferer(stain_normalizer=counting)(slide, tissue=full_mask(slide))
    assert counting.calls == 1 and counting.pixels.dtype == np.uint8 and counting.pixels.shape[1] == 3
    assert counting.tiles == len(inferer().plan(slide, full_mask(slide))) > 3  # several batches, one fit
    assert np.array_equal(normed.probabilities, plain.probabilities, equal_nan=True)


def test_real_normaliser_runs_and_is_fitted_once_per_slide(slide_path, tmp_path):
    other_lab = he_image(200, 200, seed=2, stains=(np.array([0.55, 0.78, 0.30]), np.array([0.20, 0.95, 0.25])))
    macenko = Counting(MacenkoNormalizer(MacenkoNormalizer.fit(other_lab.reshape(-1, 3))))
    run = inferer(stain_normalizer=macenko)
    slide = open_slide(slide_path)
    plain = inferer()(slide, tissue=full_mask(slide))
    first = run(slide, tissue=full_mask(slide))
    assert macenko.calls == 1
    # The fit saw the tissue of a low-resolution read only: 8 µm/px by default, here the mask's 8 µm/px.
    assert len(macenko.pixels) <= (320 // 16 + 1) * (400 // 16 + 1)
    assert np.isfinite(first.probabilities).all()
    assert not np.allclose(first.probabilities, plain.probabilities, atol=1e-4)
    second = run(slide_path, tissue=full_mask(slide))  # another call: its own fit
    assert macenko.calls == 2 and np.array_equal(second.probabilities, first.probabilities)


def test_tissue_mask_and_stain_fit_share_one_read(slide_path, monkeypatch):
    reads = []
    original = Slide.thumbnail

    def counting(self, mpp):
        reads.append(mpp)
        return original(self, mpp)

    monkeypatch.setattr(Slide, "thumbnail", counting)
    slide = open_slide(slide_path)
    counting_norm = Counting()
    smap = inferer(stain_normalizer=counting_norm)(slide)
    assert reads == [8.0] and counting_norm.calls == 1
    assert np.array_equal(smap.computed, inferer()(slide).computed)  # the same tiles as without the hook
    reads.clear()
    inferer()(slide, tissue=full_mask(slide))
    assert reads == []  # without a normaliser nothing extra is read


def test_bad_normaliser_is_refused():
    with pytest.raises(ValueError, match="stain_normalizer must have a for_slide"):
        inferer(stain_normalizer="reinhard")


def test_a_fit_without_stained_pixels_keeps_the_colours_and_names_the_slide(slide_path, caplog):
    slide = open_slide(slide_path)
    mask = np.zeros((21, 26), bool)
    mask[:, 22:] = True  # the glass strip only (x ≥ 352 of 400)
    glass_only = TissueMask(mask, mpp=8.0, scale=(16.0, 16.0))
    with caplog.at_level("WARNING"):
        normalised = inferer(stain_normalizer=Counting())(slide, tissue=glass_only)
    assert re.search(
        r"slide.tif: stain normalisation at 8 µm/px skipped, colours kept as read: .*only \d+ tissue pixels",
        caplog.text)
    plain = inferer()(slide, tissue=glass_only)
    np.testing.assert_array_equal(normalised.probabilities, plain.probabilities)
