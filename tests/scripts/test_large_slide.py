"""The huge-slide maker and benchmark (monai_wsseg.bench.large_slide, .large_inference and their scripts), on a
small case (8192 × 6144 px): the file is a proper pyramid that both backends open, its tissue is where it was
drawn, and inference covers it (no timing asserts)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import tifffile

from monai_wsseg.bench import large_slide
from monai_wsseg.wsi.slide import available_backends, open_slide
from monai_wsseg.wsi.tissue import compute_tissue_mask
from tests.conftest import load_script

W, H, TISSUE = 8192, 6144, 0.3


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "slide.tif"
    return large_slide.make_large_slide(path, W, H, mpp=0.5, tissue_fraction=TISSUE, seed=3)


@pytest.fixture(scope="module")
def bench(made, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    result = load_script("bench_large_slide").main([
        "--slide", made.path, "--backend", "tifffile", "--json", str(out),
    ])
    return result, json.loads(out.read_text())


def test_pyramid_layout(made):
    assert made.level_shapes == [(6144, 8192), (3072, 4096), (1536, 2048), (768, 1024), (384, 512)]
    assert abs(made.tissue_fraction - TISSUE) < 0.01
    assert made.layout.shape == (H // 256, W // 256)
    assert made.tiles == sum(math.ceil(h / 256) * math.ceil(w / 256) for h, w in made.level_shapes)
    assert made.encoded < made.tiles / 4  # level-0 tiles and single-texture tiles are encoded once
    with tifffile.TiffFile(made.path) as tf:
        pages = tf.pages
        assert len(pages) == len(made.level_shapes)  # every level a top-level page, no SubIFDs
        for k, page in enumerate(pages):
            assert page.shape == (*made.level_shapes[k], 3)
            assert page.is_tiled and page.tilewidth == 256 and page.compression == 7
            assert page.photometric == 2  # RGB
            assert page.subfiletype == (1 if k else 0)
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
            num, den = page.tags["XResolution"].value
            assert num / den == pytest.approx(1e4 / (0.5 * 2**k), rel=1e-6)


def test_pre_encoded_tiles_are_what_tifffile_writes():
    m = large_slide
    tile = m.make_textures(1, seed=0, mpp=0.5)[0]
    buf = io.BytesIO()
    tifffile.imwrite(buf, tile, tile=(256, 256), photometric="rgb", compression="jpeg",
                     compressionargs={"level": 80, "outcolorspace": "RGB"}, metadata=None)
    buf.seek(0)
    with tifffile.TiffFile(buf) as tf:
        page = tf.pages[0]
        buf.seek(page.dataoffsets[0])
        reference = buf.read(page.databytecounts[0])
    assert m._Encoder(80)(tile) == reference


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_opens_with_both_backends(made, backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    slide = open_slide(made.path, backend=backend)
    assert slide.dimensions == (W, H)
    assert slide.mpp == pytest.approx(0.5)
    assert slide.level_dimensions == tuple((w, h) for h, w in made.level_shapes)
    # A tissue cell reads as its texture, the same through either backend, and level 2 is level 0 reduced.
    r, c = np.argwhere(made.layout > 0)[len(np.argwhere(made.layout > 0)) // 2]
    region = slide.read_region((c * 256, r * 256), (256, 256))
    ref = open_slide(made.path, backend="tifffile").read_region((c * 256, r * 256), (256, 256))
    assert np.abs(region.astype(int) - ref).mean() < 2
    assert region.std() > 10 and region.mean() < 220  # texture, not glass
    level0 = slide.read_region((c * 256, r * 256), (64, 64), mpp=2.0).astype(int)  # level 2 is stored: read as is
    level2 = slide.read_level((c * 256, r * 256), (64, 64), 2).astype(int)
    assert np.abs(level0 - level2).mean() < 6
    slide.close()


def test_tissue_mask_finds_the_drawn_tissue(made):
    slide = open_slide(made.path, backend="tifffile")
    tissue = compute_tissue_mask(slide)
    assert abs(tissue.fraction - TISSUE) <= 0.1
    # and in the right place: drawn cells are tissue, glass cells are not (mask pixels are 16 px)
    cells = tissue.mask[: H // 16, : W // 16].reshape(H // 256, 16, W // 256, 16).mean(axis=(1, 3))
    drawn = made.layout > 0
    assert cells[drawn].mean() > 0.8
    assert cells[~drawn].mean() < 0.05


def test_benchmark_covers_the_tissue_and_reports_everything(made, bench):
    result, saved = bench
    assert saved == json.loads(json.dumps(result))
    for key in ("slide", "settings", "tissue_fraction", "tiles", "tissue_mpx", "tile_mpx", "seconds",
                "throughput_tissue_mpx_s", "throughput_tile_mpx_s", "map_shape", "map_downsample", "tissue_covered",
                "peak_rss_mb", "peak_rss_below_4gib", "engine_estimates"):
        assert key in saved, key
    for phase in ("tissue_mask", "inference", "write_map", "total"):
        assert saved["seconds"][phase] > 0, phase
    peaks = saved["peak_rss_mb"]
    assert peaks["main"] > 0 and peaks["workers"] > 0  # one DataLoader worker ran
    assert {"tissue_mask", "inference", "write_map"} <= set(peaks["per_phase"])
    assert isinstance(saved["peak_rss_below_4gib"], bool)
    assert saved["slide"]["width"] == W and saved["slide"]["height"] == H
    assert abs(saved["tissue_fraction"] - TISSUE) <= 0.1
    assert saved["map_shape"] == [1, H // 16, W // 16] and saved["map_downsample"] == 16
    assert 0 < saved["tiles"] <= saved["tiles_possible"] == 12
    assert saved["tissue_covered"] == 1.0  # every tissue-mask pixel lands on a computed cell
    assert saved["map_finite_where_computed"] and saved["unread_windows"] == 0
    assert saved["settings"]["network_parameters"] < 1000


def test_make_large_slide_script(tmp_path, capsys):
    path = tmp_path / "small.tif"
    summary = load_script("make_large_slide").main([str(path), "--width", "1024", "--height", "768", "--tissue", "0.5"])
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["small.tif"]  # no temporary file left
    assert summary["width"] == 1024 and summary["level_shapes"][0] == [768, 1024]
    printed = capsys.readouterr().out
    assert printed.startswith("level 0: 1024 x 768 px") and "level 1: 512 x 384 px" in printed
    assert json.loads(printed[printed.index("{"):]) == summary
    with pytest.raises(SystemExit) as exc:
        load_script("make_large_slide").main([str(tmp_path / "no_such_folder" / "x.tif"), "--width", "512"])
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("refused: ") and "no_such_folder" in error and "\n" not in error
