"""Patch grids on tissue masks and position sampling: geometry against brute force, resolution
handling, every error path, and one end-to-end run on CMU-1-Small-Region."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from monai_wsseg.wsi.grid import sample_positions, tissue_grid
from monai_wsseg.wsi.tissue import TissueMask, compute_tissue_mask

CMU = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "CMU-1-Small-Region.svs"


class FakeSlide:
    """Just the slide attributes grids need; ``image`` (level 0) enables ``thumbnail``."""

    def __init__(
        self,
        dimensions: tuple[int, int],
        mpp: float,
        path: str = "/fake/cohort/TCGA-XX-0001-01Z.svs",
        image: np.ndarray | None = None,
    ) -> None:
        self.dimensions = dimensions
        self.mpp = mpp
        self.path = Path(path)
        self.image = image

    def thumbnail(self, mpp: float) -> np.ndarray:
        assert self.image is not None
        w, h = self.dimensions
        size = (max(1, round(w * self.mpp / mpp)), max(1, round(h * self.mpp / mpp)))
        return np.asarray(Image.fromarray(self.image).resize(size, Image.Resampling.BOX))


def _blobs(shape: tuple[int, int], seed: int, fill: float = 0.45) -> np.ndarray:
    """Random smooth tissue-like blobs covering about ``fill`` of the mask."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 3.0)
    return field > np.quantile(field, 1 - fill)


def _mask_for(slide: FakeSlide, mask: np.ndarray) -> TissueMask:
    w, h = slide.dimensions
    return TissueMask(mask=mask, mpp=8.0, scale=(w / mask.shape[1], h / mask.shape[0]))


# --- geometry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("min_tissue", [0.0, 0.3, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("stride", [None, 16, 40])
def test_grid_matches_brute_force_loop(min_tissue: float, stride: int | None) -> None:
    # Level 0 at 0.5 µm/px, mask at 4 µm/px (8 level-0 px per mask px); patches of 32 px at 1 µm/px
    # cover 64 level-0 px = 8 mask px, strides of 16 / 40 px at 1 µm/px step 32 / 80 level-0 px.
    slide = FakeSlide((1000, 808), mpp=0.5)
    mask = _blobs((101, 125), seed=1)
    tissue = _mask_for(slide, mask)
    got = tissue_grid(slide, tissue, patch_size=32, mpp=1.0, min_tissue=min_tissue, stride=stride)

    step = 2 * (stride or 32)
    want = []
    for y in range(0, 808 - 64 + 1, step):
        for x in range(0, 1000 - 64 + 1, step):
            if mask[y // 8 : (y + 64) // 8, x // 8 : (x + 64) // 8].mean() >= min_tissue:
                want.append((x, y))
    assert got.dtype == np.int64 and got.shape == (len(want), 2)
    assert [tuple(p) for p in got.tolist()] == want  # same positions, same row-major order
    assert np.all(got % step == 0)
    assert np.all(got[:, 0] + 64 <= 1000) and np.all(got[:, 1] + 64 <= 808) and np.all(got >= 0)


def test_every_position_recomputed_from_mask_and_none_missed() -> None:
    # Footprint not a multiple of the mask pixel: 256 px at 0.5 µm/px on a 0.2527 µm/px slide.
    slide = FakeSlide((9000, 7000), mpp=0.2527)
    mask = _blobs((221, 284), seed=2)
    tissue = _mask_for(slide, mask)
    min_tissue = 0.6
    got = tissue_grid(slide, tissue, patch_size=256, mpp=0.5, min_tissue=min_tissue)
    side = 256 * 0.5 / 0.2527

    level0 = np.kron(mask, np.ones((8, 8), bool))  # 8 sub-pixels per mask px, brute-force area
    sx, sy = tissue.scale

    def fraction(x: int, y: int) -> float:
        x0, x1 = round(x / sx * 8), round((x + side) / sx * 8)
        y0, y1 = round(y / sy * 8), round((y + side) / sy * 8)
        return float(level0[y0:y1, x0:x1].mean())

    assert all(fraction(x, y) >= min_tissue - 0.02 for x, y in got)
    assert np.all(tissue.region_fraction(got[:, 0], got[:, 1], side, side) >= min_tissue - 1e-9)
    assert np.all(got[:, 0] + side <= 9000) and np.all(got[:, 1] + side <= 7000)
    # The rejected grid points are exactly the ones below the threshold.
    xs = np.floor(np.arange(int((9000 - side) // side) + 1) * side + 1e-9).astype(int)
    ys = np.floor(np.arange(int((7000 - side) // side) + 1) * side + 1e-9).astype(int)
    grid_x, grid_y = np.meshgrid(xs, ys)
    all_fractions = tissue.region_fraction(grid_x, grid_y, side, side)
    assert len(got) == int((all_fractions >= min_tissue).sum())
    assert set(map(tuple, got.tolist())) <= set(zip(grid_x.ravel().tolist(), grid_y.ravel().tolist(), strict=True))


@pytest.mark.parametrize(
    ("slide_mpp", "mpp", "footprint"),
    [(0.25, 0.5, 448), (0.25, 0.25, 224), (0.5, 0.5, 224), (0.5, 2.0, 896)],
)
def test_footprint_scales_with_mpp(slide_mpp: float, mpp: float, footprint: int) -> None:
    slide = FakeSlide((4000, 3000), mpp=slide_mpp)
    tissue = _mask_for(slide, np.ones((300, 400), bool))
    got = tissue_grid(slide, tissue, patch_size=224, mpp=mpp)
    xs, ys = np.unique(got[:, 0]), np.unique(got[:, 1])
    assert np.all(np.diff(xs) == footprint) and np.all(np.diff(ys) == footprint)
    assert len(xs) == (4000 - footprint) // footprint + 1
    assert len(ys) == (3000 - footprint) // footprint + 1
    assert len(got) == len(xs) * len(ys)


def test_overlapping_stride_and_non_integer_footprint() -> None:
    slide = FakeSlide((5000, 4000), mpp=0.2527)
    tissue = _mask_for(slide, np.ones((126, 158), bool))
    side = 224 * 0.5 / 0.2527
    got = tissue_grid(slide, tissue, patch_size=224, mpp=0.5, stride=112, min_tissue=1.0)
    xs = np.unique(got[:, 0])
    np.testing.assert_array_equal(xs, np.floor(np.arange(len(xs)) * side / 2 + 1e-9).astype(int))
    assert xs[-1] + side <= 5000 < xs[-1] + side / 2 + side
    assert len(got) > len(tissue_grid(slide, tissue, patch_size=224, mpp=0.5, min_tissue=1.0))


def test_min_tissue_monotone() -> None:
    slide = FakeSlide((2000, 1600), mpp=0.5)
    tissue = _mask_for(slide, _blobs((100, 125), seed=4))
    counts = [len(tissue_grid(slide, tissue, patch_size=64, mpp=1.0, min_tissue=t)) for t in (0.0, 0.25, 0.5, 0.9)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert counts[0] == ((2000 - 128) // 128 + 1) * ((1600 - 128) // 128 + 1)


def test_large_slide_is_vectorised() -> None:
    # 100,000² px at 0.25 µm/px, mask at 8 µm/px; about 4.5 M candidate positions with stride 16.
    slide = FakeSlide((100_000, 100_000), mpp=0.25)
    yy, xx = np.mgrid[:3125, :3125]
    tissue = _mask_for(slide, (yy - 1500) ** 2 + (xx - 1600) ** 2 < 1200**2)
    start = time.perf_counter()
    dense = tissue_grid(slide, tissue, patch_size=224, mpp=0.5, stride=16)
    elapsed = time.perf_counter() - start
    assert len(dense) > 2_000_000
    assert elapsed < 15.0  # a Python loop over these positions takes minutes


# --- errors -----------------------------------------------------------------------------------------


def _error_case() -> tuple[FakeSlide, TissueMask]:
    slide = FakeSlide((1000, 800), mpp=0.5, path="/cohort/slides/error-case-77.svs")
    return slide, _mask_for(slide, np.ones((100, 125), bool))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patch_size": 1024, "mpp": 0.5},  # 1024 > 800 px high
        {"patch_size": 224, "mpp": 4.0},  # 1792 level-0 px
        {"patch_size": 224, "mpp": 0.5, "min_tissue": -0.1},
        {"patch_size": 224, "mpp": 0.5, "min_tissue": 1.5},
        {"patch_size": 224, "mpp": 0.5, "min_tissue": float("nan")},
        {"patch_size": 0, "mpp": 0.5},
        {"patch_size": -224, "mpp": 0.5},
        {"patch_size": 22.4, "mpp": 0.5},
        {"patch_size": 224, "mpp": 0.0},
        {"patch_size": 224, "mpp": -0.5},
        {"patch_size": 224, "mpp": float("nan")},
        {"patch_size": 224, "mpp": 0.5, "stride": 0},
    ],
)
def test_bad_arguments_name_the_slide(kwargs: dict) -> None:
    slide, tissue = _error_case()
    with pytest.raises(ValueError, match=re.escape(str(slide.path))):
        tissue_grid(slide, tissue, **kwargs)


def test_no_tissue_names_the_slide() -> None:
    slide, _ = _error_case()
    empty = _mask_for(slide, np.zeros((100, 125), bool))
    with pytest.raises(ValueError, match=re.escape(str(slide.path)) + ".*tissue"):
        tissue_grid(slide, empty, patch_size=64, mpp=0.5)
    speck = np.zeros((100, 125), bool)
    speck[50, 60] = True  # 1 of 16 mask px of a 128 px patch: below min_tissue 0.5
    with pytest.raises(ValueError, match=re.escape(str(slide.path))):
        tissue_grid(slide, _mask_for(slide, speck), patch_size=64, mpp=1.0)


def test_mask_of_another_slide_is_rejected() -> None:
    slide, _ = _error_case()
    other = TissueMask(mask=np.ones((100, 125), bool), mpp=8.0, scale=(16.0, 16.0))
    with pytest.raises(ValueError, match=re.escape(str(slide.path))):
        tissue_grid(slide, other, patch_size=64, mpp=0.5)
    with pytest.raises(ValueError, match=re.escape(str(slide.path))):
        tissue_grid(slide, np.ones((100, 125), bool), patch_size=64, mpp=0.5)  # type: ignore[arg-type]


# --- sampling ---------------------------------------------------------------------------------------


def _positions(n: int) -> np.ndarray:
    return np.stack([np.arange(n) * 224, np.arange(n) % 7 * 224], axis=1).astype(np.int64)


def test_sampling_without_replacement_has_unique_rows() -> None:
    positions = _positions(500)
    got = sample_positions(positions, 150, np.random.default_rng(0))
    assert got.shape == (150, 2) and got.dtype == np.int64
    assert len(np.unique(got, axis=0)) == 150
    assert set(map(tuple, got.tolist())) <= set(map(tuple, positions.tolist()))
    # All N requested: a permutation.
    everything = sample_positions(positions, 500, np.random.default_rng(1))
    assert sorted(map(tuple, everything.tolist())) == sorted(map(tuple, positions.tolist()))


def test_sampling_with_replacement_only_when_too_few() -> None:
    positions = _positions(40)
    got = sample_positions(positions, 150, np.random.default_rng(0))
    assert got.shape == (150, 2)
    rows, counts = np.unique(got, axis=0, return_counts=True)
    assert len(rows) == 40 and counts.min() >= 1 and counts.sum() == 150


def test_sampling_is_reproducible_and_random() -> None:
    positions = _positions(1000)
    a = sample_positions(positions, 100, np.random.default_rng(7))
    b = sample_positions(positions, 100, np.random.default_rng(7))
    c = sample_positions(positions, 100, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("positions", "n", "rng"),
    [
        (np.zeros((0, 2), np.int64), 5, np.random.default_rng(0)),
        (np.zeros((5, 3), np.int64), 5, np.random.default_rng(0)),
        (np.zeros(10, np.int64), 5, np.random.default_rng(0)),
        (np.zeros((5, 2), np.int64), 0, np.random.default_rng(0)),
        (np.zeros((5, 2), np.int64), -3, np.random.default_rng(0)),
        (np.zeros((5, 2), np.int64), 2.5, np.random.default_rng(0)),
        (np.zeros((5, 2), np.int64), 5, np.random.RandomState(0)),
        (np.zeros((5, 2), np.int64), 5, 0),
    ],
)
def test_sampling_validation(positions: np.ndarray, n: int, rng: object) -> None:
    with pytest.raises(ValueError):
        sample_positions(positions, n, rng)  # type: ignore[arg-type]


# --- end to end on a real slide ---------------------------------------------------------------------


def test_cmu_small_region_grid() -> None:
    openslide = pytest.importorskip("openslide")
    if not CMU.exists():
        pytest.skip(f"real test data not found: {CMU}")
    with openslide.OpenSlide(str(CMU)) as handle:
        image = np.asarray(handle.read_region((0, 0), 0, handle.dimensions).convert("RGB"))
    slide = FakeSlide((2220, 2967), mpp=0.499, path=str(CMU), image=image)
    tissue = compute_tissue_mask(slide, mpp=8.0)
    side = 224 * 0.5 / 0.499
    positions = tissue_grid(slide, tissue, patch_size=224, mpp=0.5, min_tissue=0.5)
    n_grid = int((2220 - side) // side + 1) * int((2967 - side) // side + 1)
    # Tissue covers ~a third of the slide; half-tissue patches are a comparable share of the grid.
    assert 0.15 * n_grid <= len(positions) <= 0.6 * n_grid
    assert np.all(tissue.region_fraction(positions[:, 0], positions[:, 1], side, side) >= 0.5)
    # Paper A's rule (drop tiles with > 75 % background) keeps more of them.
    assert len(tissue_grid(slide, tissue, patch_size=224, mpp=0.5, min_tissue=0.25)) > len(positions)
    # Independent check: sample the mask at level-0 pixel centres (every 2nd pixel) inside each patch.
    offsets = np.arange(0.5, side, 2.0)
    for x, y in positions:
        cols = np.minimum(((x + offsets) / tissue.scale[0]).astype(int), tissue.mask.shape[1] - 1)
        rows = np.minimum(((y + offsets) / tissue.scale[1]).astype(int), tissue.mask.shape[0] - 1)
        assert tissue.mask[np.ix_(rows, cols)].mean() >= 0.5 - 0.02
