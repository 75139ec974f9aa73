"""Slide opening and region reading through every installed backend."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from monai_wsseg.wsi import slide as slide_module
from monai_wsseg.wsi.slide import SlideReadError, available_backends, open_slide
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import real_file, smooth_rgb

BACKENDS = [b for b in available_backends() if b != "cucim"]
MPP = 0.25


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    """A 2048x1536 JPEG pyramid at 0.25 um/px and the image it was made from."""
    image = smooth_rgb(1536, 2048, seed=3)
    path = tmp_path_factory.mktemp("slides") / "pyramid.tif"
    write_pyramidal_tiff(path, image, MPP, quality=95)
    return path, image


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_openslide_is_installed_for_the_suite():
    # The README installs the openslide extra; without it half of the backend comparisons would vanish.
    assert "openslide" in available_backends()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pyramid_geometry(pyramid, backend):
    path, _ = pyramid
    with open_slide(path, backend=backend) as s:
        assert s.dimensions == (2048, 1536)
        assert s.level_count >= 3
        assert s.mpp == pytest.approx(MPP, rel=1e-3)
        assert s.level_mpps[1] == pytest.approx(2 * MPP, rel=1e-3)
        assert s.level_dimensions[1] == (1024, 768)
        assert s.size_at(1.0) == (512, 384)


@pytest.mark.parametrize("backend", BACKENDS)
def test_level0_region_matches_source(pyramid, backend):
    path, image = pyramid
    with open_slide(path, backend=backend) as s:
        region = s.read_region((301, 157), (400, 300))
    assert region.shape == (300, 400, 3) and region.dtype == np.uint8
    assert mean_abs_diff(region, image[157:457, 301:701]) < 2.0


def test_backends_agree_on_every_level(pyramid):
    path, _ = pyramid
    slides = [open_slide(path, backend=b) for b in BACKENDS]
    for level in range(slides[0].level_count):
        regions = [s.read_level((512, 256), (200, 160), level) for s in slides]
        for other in regions[1:]:
            assert mean_abs_diff(regions[0], other) < 1.5


def test_backends_agree_on_real_svs():
    path = real_file("CMU-1-Small-Region.svs")
    regions = []
    for backend in BACKENDS:
        with open_slide(path, backend=backend) as s:
            assert s.dimensions == (2220, 2967)
            assert s.mpp == pytest.approx(0.499)
            # The SVS thumbnail/label/macro pages are not pyramid levels.
            assert s.level_count == 1
            regions.append(s.read_region((700, 1200), (512, 384)))
    for other in regions[1:]:
        assert mean_abs_diff(regions[0], other) < 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_at_stored_level_mpp_uses_that_level(pyramid, backend):
    path, _ = pyramid
    with open_slide(path, backend=backend) as s:
        assert s.level_for_mpp(0.5) == 1
        assert s.level_for_mpp(0.51) == 1  # within 5 %
        assert s.level_for_mpp(0.75) == 1  # coarsest finer level
        assert s.level_for_mpp(0.1) == 0
        np.testing.assert_array_equal(s.read_region((64, 32), (100, 80), mpp=0.5), s.read_level((64, 32), (100, 80), 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_off_level_mpp_is_area_resampled(pyramid, backend):
    path, image = pyramid
    with open_slide(path, backend=backend) as s:
        region = s.read_region((300, 240), (200, 150), mpp=0.75)  # 3 level-0 px per output px
    assert region.shape == (150, 200, 3)
    expected = image[240 : 240 + 450, 300 : 300 + 600].reshape(150, 3, 200, 3, 3).mean(axis=(1, 3))
    assert mean_abs_diff(region, expected) < 3.0


def test_strip_reading_equals_single_read(pyramid, monkeypatch):
    path, _ = pyramid
    s = open_slide(path, backend="tifffile")
    whole = s.read_region((10, 20), (300, 250), mpp=0.7)
    monkeypatch.setattr(slide_module, "_MAX_READ_PIXELS", 20_000)
    strips = s.read_region((10, 20), (300, 250), mpp=0.7)
    assert mean_abs_diff(whole, strips) < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_regions_past_the_border_are_padded_white(pyramid, backend):
    path, image = pyramid
    with open_slide(path, backend=backend) as s:
        region = s.read_region((1900, 1400), (300, 200))
        outside = s.read_region((-500, -500), (100, 100))
    assert region.shape == (200, 300, 3)
    assert (region[136:, :] == 255).all() and (region[:, 148:] == 255).all()
    assert mean_abs_diff(region[:136, :148], image[1400:, 1900:]) < 2.0
    assert (outside == 255).all()


def test_thumbnail_has_size_at_mpp(pyramid):
    path, image = pyramid
    s = open_slide(path)
    thumb = s.thumbnail(4.0)
    assert thumb.shape == (96, 128, 3)
    expected = np.asarray(Image.fromarray(image).resize((128, 96), Image.Resampling.BOX))
    assert mean_abs_diff(thumb, expected) < 3.0


class _Regions(torch.utils.data.Dataset):
    def __init__(self, slide, positions):
        self.slide, self.positions = slide, positions

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i):
        return torch.from_numpy(self.slide.read_region(self.positions[i], (128, 128)).copy())


def test_slide_is_safe_in_forked_dataloader_workers(pyramid):
    # One TIFF handle shared across forked workers corrupts JPEG decoding; the slide reopens per process.
    path, _ = pyramid
    s = open_slide(path, backend="tifffile")
    s.read_region((0, 0), (8, 8))  # open the handle in the parent before forking
    positions = [(x, y) for x in range(0, 1920, 128) for y in range(0, 1408, 256)]
    serial = [s.read_region(p, (128, 128)) for p in positions]
    loader = torch.utils.data.DataLoader(_Regions(s, positions), batch_size=4, num_workers=2)
    parallel = torch.cat(list(loader)).numpy()
    np.testing.assert_array_equal(parallel, np.stack(serial))
    clone = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(clone.read_region(positions[5], (128, 128)), serial[5])


# -- bad input: one clear error naming the file ---------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.svs"
    with pytest.raises(FileNotFoundError, match=re.escape("nope.svs: no such slide file")):
        open_slide(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.svs"
    path.write_bytes(b"")
    with pytest.raises(SlideReadError, match=r"empty.svs: empty file \(0 bytes\)"):
        open_slide(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_slide(tmp_path, backend):
    path = tmp_path / "notes.svs"
    path.write_text("this is a text file, renamed\n" * 100)
    with pytest.raises(SlideReadError, match=re.escape("notes.svs: not a readable TIFF slide")):
        open_slide(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_tiff(pyramid, tmp_path, backend):
    src, _ = pyramid
    data = src.read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideReadError, match=r"cut\.tif: (truncated file|not a readable TIFF)"):
        open_slide(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slide_without_mpp(tmp_path, backend):
    path = tmp_path / "nompp.tif"
    image = smooth_rgb(512, 512)
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", compression="zlib")
    with pytest.raises(SlideReadError, match=re.escape("nompp.tif: the file records no microns per pixel; pass mpp=")):
        open_slide(path, backend=backend)
    s = open_slide(path, backend=backend, mpp=0.5)
    assert s.mpp == 0.5
    np.testing.assert_array_equal(s.read_region((0, 0), (512, 512)), image)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("size", "unit", "mpp"), [(0.25, None, 0.25), (250.0, "nm", 0.25), (0.0005, "mm", 0.5)])
def test_ome_tiff_mpp_is_read_from_its_xml(tmp_path, backend, size, unit, mpp):
    path = tmp_path / "slide.ome.tif"
    meta = {"axes": "YXS", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit:
        meta |= {"PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}
    tifffile.imwrite(path, smooth_rgb(512, 512), tile=(256, 256), photometric="rgb", metadata=meta)
    assert open_slide(path, backend=backend).mpp == pytest.approx(mpp)


def test_folder_bad_mpp_and_unknown_backend(pyramid, tmp_path):
    with pytest.raises(SlideReadError, match="is a folder"):
        open_slide(tmp_path)
    with pytest.raises(ValueError, match="mpp must be a positive"):
        open_slide(pyramid[0], mpp=-1)
    with pytest.raises(ValueError, match="unknown slide backend 'pil'"):
        open_slide(pyramid[0], backend="pil")
    s = open_slide(pyramid[0])
    with pytest.raises(ValueError, match=re.escape("pyramid.tif: target mpp must be a positive")):
        s.read_region((0, 0), (10, 10), mpp=0)
    with pytest.raises(ValueError, match=re.escape("pyramid.tif: region size must be positive")):
        s.read_region((0, 0), (0, 10))
