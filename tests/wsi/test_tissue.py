"""Tissue masks: real H&E material (CMU-1, HistoQC pen / coverslip images, TCGA thumbnails), blank and
noisy glass, physical-unit morphology, the TissueMask geometry, and compute_tissue_mask on a fake slide.

The HistoQC and TCGA images carry no resolution; the mpp given to them below is an estimate from the
width of the marker strokes and the size of fat cells (it only scales the morphology).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_wsseg.wsi.pen import pen_mask_from_rgb
from monai_wsseg.wsi.tissue import TissueMask, compute_tissue_mask, tissue_mask_from_rgb

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
CMU = REAL / "CMU-1-Small-Region.svs"
CMU_MPP = 0.499

# Estimated µm per pixel of the unlabelled images (see module docstring).
IMAGE_MPP = {
    "pen_green": 32.0,
    "pen_red": 32.0,
    "coverslip_edge": 16.0,
    "tcga-diagnostic-thumb": 32.0,
    "tcga-red-pen-thumb": 4.0,
}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data not found: {path} (expected in the project's sibling shared/data/real/)")
    return path


def _rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(_need(REAL / f"{name}.png")).convert("RGB"))


def _mask(name: str) -> np.ndarray:
    return np.asarray(Image.open(_need(REAL / f"{name}_mask.png")).convert("L")) > 0


class FakeSlide:
    """The slide interface compute_tissue_mask needs, backed by a level-0 numpy image."""

    def __init__(self, image: np.ndarray, mpp: float, path: str = "/fake/slides/case-01.svs") -> None:
        self.image = image
        self.mpp = mpp
        self.path = Path(path)
        self.dimensions = (image.shape[1], image.shape[0])

    def thumbnail(self, mpp: float) -> np.ndarray:
        w, h = self.dimensions
        size = (max(1, round(w * self.mpp / mpp)), max(1, round(h * self.mpp / mpp)))
        return np.asarray(Image.fromarray(self.image).resize(size, Image.Resampling.BOX))


@pytest.fixture(scope="module")
def cmu_level0() -> np.ndarray:
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(str(_need(CMU))) as slide:
        assert slide.dimensions == (2220, 2967)
        return np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


# --- real slides -----------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [8, 16])
def test_cmu_small_region_tissue_fraction(cmu_level0: np.ndarray, factor: int) -> None:
    rgb = _block_mean(cmu_level0, factor)
    mask = tissue_mask_from_rgb(rgb, mpp=CMU_MPP * factor)
    assert mask.shape == rgb.shape[:2] and mask.dtype == bool
    assert 0.25 <= mask.mean() <= 0.50
    # No ink on this slide: dark epidermis and bright eosin fibres must not pass for black / red pen.
    assert pen_mask_from_rgb(rgb, mpp=CMU_MPP * factor).mean() <= 0.005


def test_cmu_small_region_through_compute_tissue_mask(cmu_level0: np.ndarray) -> None:
    slide = FakeSlide(cmu_level0, CMU_MPP)
    tissue = compute_tissue_mask(slide, mpp=8.0)
    h, w = tissue.mask.shape
    assert (w, h) == (round(2220 * CMU_MPP / 8.0), round(2967 * CMU_MPP / 8.0))
    assert tissue.mpp == 8.0
    assert tissue.scale == pytest.approx((2220 / w, 2967 / h))
    assert 0.25 <= tissue.fraction <= 0.50
    # The whole slide seen as one box has the slide's tissue fraction.
    assert tissue.region_fraction(0, 0, 2220, 2967) == pytest.approx(tissue.fraction)


@pytest.mark.parametrize(("name", "tissue_range"), [("pen_green", (0.08, 0.35)), ("pen_red", (0.30, 0.60))])
def test_histoqc_pen_ink_is_not_tissue(name: str, tissue_range: tuple[float, float]) -> None:
    rgb, pen = _rgb(name), _mask(name)
    mpp = IMAGE_MPP[name]
    mask = tissue_mask_from_rgb(rgb, mpp=mpp)
    assert mask[pen].mean() <= 0.10, "pen pixels marked tissue"
    assert tissue_range[0] <= mask.mean() <= tissue_range[1]
    # The pen detector itself finds the annotated ink.
    assert pen_mask_from_rgb(rgb, mpp=mpp)[pen].mean() >= 0.90
    # Discriminative: without pen exclusion most of the ink would count as tissue.
    assert tissue_mask_from_rgb(rgb, mpp=mpp, exclude_pen=False)[pen].mean() >= 0.5


def test_coverslip_edge_artifact_is_mostly_not_tissue() -> None:
    rgb, artifact = _rgb("coverslip_edge"), _mask("coverslip_edge")
    mask = tissue_mask_from_rgb(rgb, mpp=IMAGE_MPP["coverslip_edge"])
    # The edge crosses the tissue on the left, where what lies under it is still tissue.
    assert mask[artifact].mean() <= 0.15
    assert 0.30 <= mask.mean() <= 0.50


def test_tcga_diagnostic_thumbnail_drops_green_red_and_black_ink() -> None:
    rgb = _rgb("tcga-diagnostic-thumb")
    mask = tissue_mask_from_rgb(rgb, mpp=IMAGE_MPP["tcga-diagnostic-thumb"])
    assert 0.25 <= mask.mean() <= 0.55
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    green_ink = (g > r + 40) & (g > 100)
    black_ink = np.maximum(np.maximum(r, g), b) < 60
    assert green_ink.sum() > 1000 and black_ink.sum() > 1000
    assert mask[green_ink].mean() <= 0.05
    assert mask[black_ink].mean() <= 0.05


def test_tcga_red_pen_thumbnail_drops_red_ink_keeps_tissue() -> None:
    rgb = _rgb("tcga-red-pen-thumb")
    mask = tissue_mask_from_rgb(rgb, mpp=IMAGE_MPP["tcga-red-pen-thumb"])
    assert 0.35 <= mask.mean() <= 0.70
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    red_ink = (r > 150) & (g < 90) & (b < 90)
    assert red_ink.sum() > 5000
    assert mask[red_ink].mean() <= 0.05
    # The right half is H&E tissue (and white fat) without ink.
    assert mask[:, rgb.shape[1] // 2 :].mean() >= 0.6


# --- synthetic images --------------------------------------------------------------------------------


def test_blank_white_slide_has_no_tissue() -> None:
    rgb = np.full((300, 400, 3), 243, np.uint8)
    assert not tissue_mask_from_rgb(rgb, mpp=8.0).any()


@pytest.mark.parametrize("low", [200, 180])
def test_uniform_noise_on_white_has_no_tissue(low: int) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(low, 256, size=(300, 400, 3)).astype(np.uint8)
    assert tissue_mask_from_rgb(rgb, mpp=8.0).mean() <= 0.001


def test_grey_tinted_glass_has_no_tissue() -> None:
    rng = np.random.default_rng(1)
    glass = np.array([200.0, 205.0, 215.0]) + rng.normal(0, 5, size=(300, 400, 3))
    rgb = glass.clip(0, 255).astype(np.uint8)
    assert tissue_mask_from_rgb(rgb, mpp=8.0).mean() <= 0.001


def _canvas(shape: tuple[int, int] = (200, 200)) -> np.ndarray:
    return np.full((*shape, 3), 242, np.uint8)


PINK = (205, 130, 185)


def test_small_objects_removed_in_physical_units() -> None:
    rgb = _canvas()
    rgb[20:30, 20:30] = PINK  # 10 x 10 px
    rgb[100:160, 100:160] = PINK
    # 100 px² at 8 µm/px is 6,400 µm² (< 10,000): dropped; at 12 µm/px 14,400 µm²: kept.
    fine = tissue_mask_from_rgb(rgb, mpp=8.0, min_object_um2=10_000)
    coarse = tissue_mask_from_rgb(rgb, mpp=12.0, min_object_um2=10_000)
    assert not fine[20:30, 20:30].any() and fine[110:150, 110:150].all()
    assert coarse[22:28, 22:28].all()


def test_small_holes_filled_but_pen_never() -> None:
    rgb = _canvas()
    rgb[40:160, 40:160] = PINK
    rgb[70:75, 70:75] = 245  # 25 px² white hole = 1,600 µm² at 8 µm/px
    rgb[120:140, 120:140] = (40, 170, 150)  # green marker inside the tissue
    mask = tissue_mask_from_rgb(rgb, mpp=8.0, min_hole_um2=5_000)
    assert mask[70:75, 70:75].all()
    assert not mask[120:140, 120:140].any()
    kept_hole = tissue_mask_from_rgb(rgb, mpp=8.0, min_hole_um2=0)
    assert not kept_hole[71:74, 71:74].any()


def test_white_threshold_is_papers_rule() -> None:
    rgb = _canvas()
    rgb[50:150, 50:150] = (225, 190, 215)  # pale pink: G < 220, saturated enough
    assert tissue_mask_from_rgb(rgb, mpp=8.0)[60:140, 60:140].all()
    assert not tissue_mask_from_rgb(rgb, mpp=8.0, white_threshold=180).any()


@pytest.mark.parametrize(
    "rgb",
    [
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        [[[0, 0, 0]]],
    ],
)
def test_bad_images_rejected(rgb: object) -> None:
    with pytest.raises(ValueError):
        tissue_mask_from_rgb(rgb, mpp=8.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("mpp", [0, -1.0, float("nan"), float("inf"), "eight"])
def test_bad_mpp_rejected(mpp: object) -> None:
    with pytest.raises(ValueError):
        tissue_mask_from_rgb(_canvas(), mpp=mpp)  # type: ignore[arg-type]


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError):
        tissue_mask_from_rgb(_canvas(), mpp=8.0, min_object_um2=-1)
    with pytest.raises(ValueError):
        tissue_mask_from_rgb(_canvas(), mpp=8.0, white_threshold=300)


# --- TissueMask and compute_tissue_mask -----------------------------------------------------------


def test_region_fraction_matches_brute_force_including_fractional_boxes() -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((31, 47)) > 0.6
    tissue = TissueMask(mask=mask, mpp=2.0, scale=(4.0, 4.0))
    level0 = np.kron(mask, np.ones((4, 4), bool))  # one level-0 pixel per cell
    x = rng.integers(0, 150, 300)
    y = rng.integers(0, 100, 300)
    w = rng.integers(1, 40, 300)
    h = rng.integers(1, 20, 300)
    got = tissue.region_fraction(x, y, w, h)
    want = np.array([level0[b : b + d, a : a + c].mean() for a, b, c, d in zip(x, y, w, h, strict=True)])
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert isinstance(tissue.region_fraction(0, 0, 8, 8), float)
    assert tissue.fraction == pytest.approx(mask.mean())
    assert tissue.level0_size == (188.0, 124.0)


def test_grid_fraction_matches_region_fraction() -> None:
    rng = np.random.default_rng(3)
    tissue = TissueMask(mask=rng.random((40, 60)) > 0.5, mpp=8.0, scale=(3.2, 2.9))
    xs = np.arange(0, 150, 7.5)
    ys = np.arange(0, 90, 11.0)
    grid = tissue.grid_fraction(xs, ys, 20.3, 17.1)
    pointwise = tissue.region_fraction(xs[None, :], ys[:, None], 20.3, 17.1)
    np.testing.assert_allclose(grid, pointwise, atol=1e-9)


def test_tissue_mask_validation() -> None:
    with pytest.raises(ValueError):
        TissueMask(mask=np.zeros((4, 4, 3), bool), mpp=8.0, scale=(1.0, 1.0))
    with pytest.raises(ValueError):
        TissueMask(mask=np.zeros((4, 4), bool), mpp=0.0, scale=(1.0, 1.0))
    with pytest.raises(ValueError):
        TissueMask(mask=np.zeros((4, 4), bool), mpp=8.0, scale=(1.0, -1.0))
    tissue = TissueMask(mask=np.ones((4, 4), bool), mpp=8.0, scale=(2.0, 2.0))
    with pytest.raises(ValueError):
        tissue.region_fraction(0, 0, 0, 4)


def test_compute_tissue_mask_scale_maps_mask_onto_level0() -> None:
    image = np.full((1000, 1600, 3), 240, np.uint8)
    image[200:600, 400:1200] = PINK
    slide = FakeSlide(image, mpp=0.5)
    tissue = compute_tissue_mask(slide, mpp=4.0)
    assert tissue.mask.shape == (125, 200)
    assert tissue.scale == (8.0, 8.0)
    assert tissue.fraction == pytest.approx(400 * 800 / (1000 * 1600), abs=0.01)
    assert tissue.region_fraction(400, 200, 800, 400) == pytest.approx(1.0, abs=0.02)
    assert tissue.region_fraction(0, 700, 1600, 300) == 0.0


def test_compute_tissue_mask_warns_on_blank_slide() -> None:
    slide = FakeSlide(np.full((800, 800, 3), 245, np.uint8), mpp=0.25, path="/data/blank-slide.svs")
    with pytest.warns(UserWarning, match="blank-slide.svs"):
        tissue = compute_tissue_mask(slide, mpp=8.0)
    assert tissue.fraction == 0.0 and tissue.mask.shape == (25, 25)


def test_compute_tissue_mask_error_names_slide() -> None:
    slide = FakeSlide(np.full((800, 800, 3), 245, np.uint8), mpp=0.25, path="/data/odd-slide.svs")
    slide.thumbnail = lambda mpp: np.zeros((25, 25, 4), np.uint8)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=re.escape("odd-slide.svs")):
        compute_tissue_mask(slide, mpp=8.0)
    with pytest.raises(ValueError):
        compute_tissue_mask(slide, mpp=-1.0)


def test_no_warning_when_tissue_present() -> None:
    image = np.full((800, 800, 3), 240, np.uint8)
    image[100:700, 100:700] = PINK
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_tissue_mask(FakeSlide(image, mpp=0.25), mpp=8.0)
