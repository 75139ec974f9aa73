"""write_pyramidal_tiff: the pyramid every WSI reader sees, resolution tags, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from monai_wsseg.wsi.tiff_writer import downsample2x, pyramid_shapes, write_pyramidal_tiff

W, H, MPP = 2048, 1536, 0.5


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """Smooth colour fields plus texture: realistic for JPEG, different in every channel."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    small = rng.uniform(40, 215, (H // 64 + 1, W // 64 + 1, 3)).astype(np.float32)
    base = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((W, H), Image.BILINEAR), np.float32)
    base[..., 0] += 20 * np.sin(xx / 37.0)
    base[..., 2] += 20 * np.cos(yy / 23.0)
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def written(rgb, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiff") / "slide.tif"
    out = write_pyramidal_tiff(path, rgb, MPP)
    assert out == path
    return str(path)


def test_pyramid_shapes():
    shapes = pyramid_shapes(8192, 8192)
    assert shapes[0] == (8192, 8192) and shapes[1] == (4096, 4096)
    assert max(shapes[-1]) < 512 <= max(shapes[-2])
    assert pyramid_shapes(1536, 2048, min_level_size=4096) == [(1536, 2048), (768, 1024), (384, 512)]
    assert pyramid_shapes(300, 200) == [(300, 200)]  # already below min_level_size
    assert pyramid_shapes(1001, 7) == [(1001, 7), (501, 4)]  # odd sizes round up


def test_downsample2x_is_area_mean():
    rng = np.random.default_rng(1)
    for shape in [(7, 5, 3), (8, 9), (2051, 3, 3)]:
        img = rng.integers(0, 256, shape).astype(np.uint8)
        pad = img.astype(float)
        if pad.shape[0] % 2:
            pad = np.concatenate([pad, pad[-1:]], 0)
        if pad.shape[1] % 2:
            pad = np.concatenate([pad, pad[:, -1:]], 1)
        ref = (pad[0::2, 0::2] + pad[1::2, 0::2] + pad[0::2, 1::2] + pad[1::2, 1::2]) / 4
        out = downsample2x(img)
        assert out.shape == ref.shape and out.dtype == np.uint8
        assert np.abs(out - ref).max() <= 0.5 + 1e-9
    labels = rng.integers(0, 5, (9, 6)).astype(np.uint8)
    np.testing.assert_array_equal(downsample2x(labels, resample="nearest"), labels[::2, ::2])


def test_tifffile_sees_top_level_reduced_pages(written, rgb):
    with tifffile.TiffFile(written) as tf:
        pages = tf.pages
        assert len(pages) >= 3
        assert [p.shape[:2] for p in pages] == pyramid_shapes(H, W)
        for k, page in enumerate(pages):
            assert page.is_tiled and page.tilewidth == 256 and page.tilelength == 256
            assert page.subfiletype == (1 if k else 0)
            assert page.photometric == tifffile.PHOTOMETRIC.RGB
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            num, den = page.tags["XResolution"].value
            assert num / den == pytest.approx(1e4 / (MPP * 2**k), rel=1e-6)
            assert not page.subifds
        level0 = pages[0].asarray()
        level1 = pages[1].asarray()
    assert np.abs(level0.astype(int) - rgb).mean() < 2.5
    assert np.abs(level1.astype(int) - downsample2x(rgb)).mean() < 2.5


def test_openslide_reads_levels_mpp_and_pixels(written, rgb):
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(written) as slide:
        assert slide.level_count >= 3
        assert slide.dimensions == (W, H)
        assert slide.level_dimensions[1] == (W // 2, H // 2)
        assert slide.level_downsamples[2] == pytest.approx(4.0)
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(MPP, rel=1e-4)
        assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(MPP, rel=1e-4)
        region = np.asarray(slide.read_region((512, 256), 0, (300, 200)).convert("RGB"), dtype=int)
        assert np.abs(region - rgb[256:456, 512:812]).mean() < 2.5
        region = np.asarray(slide.read_region((0, 0), 2, (W // 4, H // 4)).convert("RGB"), dtype=int)
        assert np.abs(region - downsample2x(downsample2x(rgb))).mean() < 2.5


def test_tiffslide_reads_levels_mpp_and_pixels(written, rgb):
    tiffslide = pytest.importorskip("tiffslide")
    slide = tiffslide.TiffSlide(written)
    try:
        assert slide.level_count >= 3
        assert slide.dimensions == (W, H)
        assert float(slide.properties["tiffslide.mpp-x"]) == pytest.approx(MPP, rel=1e-4)
        region = np.asarray(slide.read_region((100, 1000), 0, (256, 256)).convert("RGB"), dtype=int)
        assert np.abs(region - rgb[1000:1256, 100:356]).mean() < 2.5
    finally:
        slide.close()


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_monai_wsireader_reads_pyramid(written, rgb, backend):
    if backend == "openslide":
        pytest.importorskip("openslide")
    data = pytest.importorskip("monai.data")
    reader = data.WSIReader(backend=backend)
    wsi = reader.read(written)
    assert reader.get_level_count(wsi) >= 3
    assert tuple(reader.get_size(wsi, 0)) == (H, W)
    assert tuple(reader.get_size(wsi, 1)) == (H // 2, W // 2)
    assert reader.get_mpp(wsi, 0) == pytest.approx((MPP, MPP), rel=1e-4)
    assert reader.get_mpp(wsi, 1) == pytest.approx((2 * MPP, 2 * MPP), rel=1e-4)
    patch, _ = reader.get_data(wsi, location=(256, 512), size=(128, 160), level=0)  # location is (y, x)
    patch = np.moveaxis(np.asarray(patch), 0, -1).astype(int)
    assert patch.shape == (128, 160, 3)
    assert np.abs(patch - rgb[256:384, 512:672]).mean() < 2.5


def test_label_map_zlib_is_lossless(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.kron(rng.integers(0, 5, (40, 50)), np.ones((23, 23), int)).astype(np.uint8)  # 920 x 1150
    path = write_pyramidal_tiff(tmp_path / "labels.tif", labels, 2.0, compression="zlib",
                                resample="nearest", min_level_size=256)
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert tf.pages[0].compression in (tifffile.COMPRESSION.ADOBE_DEFLATE, tifffile.COMPRESSION.DEFLATE)
        np.testing.assert_array_equal(tf.pages[0].asarray(), labels)
        np.testing.assert_array_equal(tf.pages[1].asarray(), labels[::2, ::2])
        assert len(tf.pages) == len(pyramid_shapes(*labels.shape, min_level_size=256))


def test_memmap_input_and_ycbcr_option(tmp_path, rgb):
    mm = np.memmap(tmp_path / "raw.u8", dtype=np.uint8, mode="w+", shape=rgb.shape)
    mm[:] = rgb
    mm.flush()
    ro = np.memmap(tmp_path / "raw.u8", dtype=np.uint8, mode="r", shape=rgb.shape)
    path = write_pyramidal_tiff(tmp_path / "ycc.tif", ro, 0.25, photometric="ycbcr", quality=85)
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].photometric == tifffile.PHOTOMETRIC.YCBCR
        assert np.abs(tf.pages[0].asarray().astype(int) - rgb).mean() < 4


def _leftovers(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if ".tmp-" in n)


def test_failed_write_leaves_no_file(tmp_path, rgb, monkeypatch):
    calls = {"n": 0}
    real_write = tifffile.TiffWriter.write

    def failing_write(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # level 0 is on disk (under the temporary name), level 1 fails
            raise OSError("disk full")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffWriter, "write", failing_write)
    target = tmp_path / "slide.tif"
    with pytest.raises(OSError, match="disk full"):
        write_pyramidal_tiff(target, rgb, MPP)
    assert calls["n"] == 2
    assert not target.exists()
    assert _leftovers(tmp_path) == []

    # an existing finished file survives a failed rewrite untouched
    target.write_bytes(b"previous result")
    calls["n"] = 0
    with pytest.raises(OSError):
        write_pyramidal_tiff(target, rgb, MPP)
    assert target.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == []


def test_success_uses_temporary_name_then_rename(tmp_path, rgb, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.path.basename(src), os.path.basename(dst), os.path.exists(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_pyramidal_tiff(tmp_path / "a.tif", rgb[:300, :400], MPP)
    assert len(seen) == 1 and seen[0][1:] == ("a.tif", False)
    assert seen[0][0].startswith(f".a.tif.tmp-{os.getpid()}-")  # utils.atomic's temporary name
    assert sorted(os.listdir(tmp_path)) == ["a.tif"]


@pytest.mark.parametrize(
    "image, mpp, kwargs, message",
    [
        (np.zeros((64, 64, 3), np.float32), 0.5, {}, "uint8"),
        (np.zeros((64, 64, 4), np.uint8), 0.5, {}, "shape"),
        (np.zeros((64, 64, 3, 1), np.uint8), 0.5, {}, "shape"),
        (np.zeros((64, 64, 3), np.uint8), 0.0, {}, "mpp"),
        (np.zeros((64, 64, 3), np.uint8), float("nan"), {}, "mpp"),
        (np.zeros((64, 64, 3), np.uint8), 0.5, {"compression": "lzw2"}, "compression"),
        (np.zeros((64, 64, 3), np.uint8), 0.5, {"tile_size": 100}, "tile_size"),
        (np.zeros((64, 64, 3), np.uint8), 0.5, {"quality": 0}, "quality"),
        (np.zeros((64, 64), np.uint8), 0.5, {"photometric": "rgb"}, "photometric"),
        ([[0, 1], [2, 3]], 0.5, {}, "numpy"),
    ],
)
def test_invalid_inputs_name_the_path(tmp_path, image, mpp, kwargs, message):
    target = tmp_path / "bad.tif"
    with pytest.raises(ValueError, match=message) as err:
        write_pyramidal_tiff(target, image, mpp, **kwargs)
    assert str(target) in str(err.value)
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_reported(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "x.tif"
    with pytest.raises(ValueError, match="does not exist") as err:
        write_pyramidal_tiff(target, np.zeros((32, 32, 3), np.uint8), 0.5)
    assert str(target) in str(err.value)
