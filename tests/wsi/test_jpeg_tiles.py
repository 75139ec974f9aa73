"""Compressed JPEG tiles decoded in batches (the GPU decode path), equal to OpenSlide's pixels on the CPU."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile

from monai_wsseg.wsi.jpeg_tiles import JpegTiles
from monai_wsseg.wsi.slide import open_slide
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import CMU_SLIDE, load_script, real_file, smooth_rgb

pytest.importorskip("openslide")
REGIONS = [(100, 37, 700, 500), (-50, -20, 300, 200), (0, 0, 256, 256)]


def _check_equal(path, level: int) -> None:
    tiles = JpegTiles(path, level)
    with open_slide(path, backend="openslide") as slide:
        d = slide.level_downsamples[level][0]
        h, w = tiles.shape
        for x, y, rw, rh in [*REGIONS, (w - 300, h - 200, 600, 400)]:
            ours = tiles.read((x, y), (rw, rh)).permute(1, 2, 0).numpy()
            theirs = slide.read_level((int(x * d), int(y * d)), (rw, rh), level)
            assert ours.shape == theirs.shape and np.array_equal(ours, theirs), (path, level, x, y)


def test_aperio_tiles_with_shared_tables_and_rgb_coding_equal_openslide():
    _check_equal(real_file(CMU_SLIDE.name), 0)


@pytest.mark.parametrize("level", [0, 1])
def test_project_pyramid_tiles_equal_openslide(tmp_path, level):
    path = write_pyramidal_tiff(tmp_path / "p.tif", smooth_rgb(1100, 1300, seed=5), 0.5, quality=85)
    _check_equal(path, level)


def test_tiles_survive_pickling_and_bad_files_are_named(tmp_path):
    path = write_pyramidal_tiff(tmp_path / "p.tif", smooth_rgb(600, 600, seed=1), 0.5)
    tiles = JpegTiles(path)
    first = tiles.read((0, 0), (64, 64))
    again = pickle.loads(pickle.dumps(tiles)).read((0, 0), (64, 64))
    assert np.array_equal(first.numpy(), again.numpy())
    tifffile.imwrite(tmp_path / "zlib.tif", smooth_rgb(512, 512), tile=(256, 256), compression="zlib")
    with pytest.raises(ValueError, match=r"zlib.tif: level 0 is not JPEG-tiled \(compression 8, tiled\)"):
        JpegTiles(tmp_path / "zlib.tif")
    with pytest.raises(ValueError, match=r"p.tif: level 9 does not exist"):
        JpegTiles(path, 9)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match=r"junk.tif: not a readable TIFF"):
        JpegTiles(tmp_path / "junk.tif")


def test_decode_benchmark_reports_every_codec(tmp_path):
    path = write_pyramidal_tiff(tmp_path / "p.tif", smooth_rgb(1024, 1024, seed=2), 0.5)
    out = load_script("bench_decode").main(["--slide", str(path), "--tiles", "4", "--json", str(tmp_path / "d.json")])
    assert set(out["mpx_s_per_core"]) == {"openslide", "tifffile", "torchvision_cpu", "jpeg2000"}
    assert all(v > 0 for v in out["cores_per_gpu"].values()) and out["tiles"] == 4
