"""Synthetic H&E slides and patch sets: files, ground truth, determinism, and that texture
(not colour) is what separates the classes."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from monai_wsseg.datasets.manifest import load_manifest
from monai_wsseg.io.palettes import CLASS_COLOURS
from monai_wsseg.synthetic import generator as S
from monai_wsseg.synthetic.generator import (
    make_cohort,
    make_patch_set,
    make_slide,
    parse_patch_label,
    render_slide,
    render_texture,
)
from monai_wsseg.synthetic.params import TISSUE_KINDS

W, H, MPP = 2048, 1536, 0.5
TUMOR_FRACTION = (0.25, 0.4)  # enough tumor on a small slide for tile statistics
LYMPH, TUMOR = TISSUE_KINDS.index("lymphoid"), TISSUE_KINDS.index("tumor")


# ------------------------------------------------------------------------------- small helpers
def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Rank AUC of ``score`` for label 1 vs 0 (0.5 = chance)."""
    order = np.argsort(score, kind="stable")
    r = np.empty(len(score))
    r[order] = np.arange(1, len(score) + 1)
    n1 = int(label.sum())
    n0 = len(label) - n1
    return float((r[label == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def lda_holdout_auc(x: np.ndarray, y: np.ndarray, repeats: int = 5) -> float:
    """Fisher LDA fitted on one half, AUC on the other half, averaged over splits and repeats."""
    out = []
    for rep in range(repeats):
        idx = np.random.default_rng(rep).permutation(len(y))
        half = len(y) // 2
        for fit, test in ((idx[:half], idx[half:]), (idx[half:], idx[:half])):
            x0, x1 = x[fit][y[fit] == 0], x[fit][y[fit] == 1]
            sw = np.cov(x0.T) + np.cov(x1.T) + 1e-6 * np.eye(x.shape[1])
            w = np.linalg.solve(sw, x1.mean(0) - x0.mean(0))
            out.append(auc(x[test] @ w, y[test]))
    return float(np.mean(out))


def dark_object_size(rgb: np.ndarray, mpp: float) -> float:
    """Area-weighted mean size (µm²) of hematoxylin-dark objects: red channel, Otsu, holes filled."""
    red = ndimage.gaussian_filter(rgb[..., 0].astype(np.float32), 1.0 / mpp)
    dark = ndimage.binary_fill_holes(red < threshold_otsu(red))
    labels, _ = ndimage.label(dark)
    sizes = np.bincount(labels.ravel())[1:].astype(float) * mpp * mpp
    sizes = sizes[sizes >= 4.0]
    return float((sizes**2).sum() / sizes.sum()) if sizes.size else 0.0


def band_pass_energy(rgb: np.ndarray, mpp: float) -> float:
    """Std of grey detail between ~1 and ~4 µm: granular debris vs smooth fibres."""
    grey = rgb.astype(np.float32).mean(-1)
    return float(np.std(ndimage.gaussian_filter(grey, 1.0 / mpp) - ndimage.gaussian_filter(grey, 4.0 / mpp)))


def mean_rgb(images) -> np.ndarray:
    return np.array([im.reshape(-1, 3).mean(0) for im in images])


def down2(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    return rgb[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slides")
    tumor = make_slide(folder / "t.tif", W, H, tumor=True, seed=7, mpp=MPP, mask_path=folder / "t_mask.png",
                       tumor_fraction=TUMOR_FRACTION)
    normal = make_slide(folder / "n.tif", W, H, tumor=False, seed=8, mpp=MPP)
    return folder, tumor, normal


@pytest.fixture(scope="module")
def tumor_render():
    return render_slide(W, H, tumor=True, seed=7, mpp=MPP, tumor_fraction=TUMOR_FRACTION)


# ---------------------------------------------------------------------------------------- slides
def test_slide_tiff_is_a_pyramid_with_mpp(slides, tumor_render):
    openslide = pytest.importorskip("openslide")
    _, tumor, _ = slides
    with openslide.OpenSlide(str(tumor.image_path)) as osr:
        assert osr.level_count >= 3
        assert osr.dimensions == (W, H)
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(MPP, rel=1e-4)
        region = np.asarray(osr.read_region((300, 200), 0, (512, 384)).convert("RGB"), dtype=int)
    # the file holds exactly what render_slide draws for the same seed (up to JPEG)
    assert np.abs(region - tumor_render.image[200:584, 300:812]).mean() < 4


def test_slide_content_background_and_tissue(tumor_render):
    img, kinds = tumor_render.image, tumor_render.kinds
    glass = np.repeat(np.repeat(kinds == 0, 16, 0), 16, 1)[:H, :W]
    glass = ndimage.binary_erosion(glass, iterations=8)  # away from tissue edges
    g = img[glass].astype(float)
    assert 235 <= g.mean() <= 250 and 0.5 < g.std() < 8  # white glass, slight noise
    assert 0.25 <= tumor_render.tissue_fraction <= 0.65
    assert (kinds == LYMPH).any() and (kinds == TUMOR).any()
    assert img[~glass].mean() < 200  # stained tissue is clearly darker than glass


def test_mask_file_size_values_and_fraction(slides, tumor_render):
    folder, tumor, normal = slides
    mask = Image.open(tumor.mask_path)
    assert mask.mode == "L"
    assert mask.size == (math.ceil(W / 16), math.ceil(H / 16))
    m = np.asarray(mask)
    assert set(np.unique(m)) == {0, 255}
    np.testing.assert_array_equal(m, tumor_render.tumor_mask)
    np.testing.assert_array_equal(m == 255, tumor_render.kinds == TUMOR)
    tissue = tumor_render.kinds != 0
    assert tumor.tumor_fraction == pytest.approx((m == 255).sum() / tissue.sum())
    assert 0.15 <= tumor.tumor_fraction <= 0.5
    assert not (m == 255)[~tissue].any()  # tumor only inside tissue
    # normal slides: no mask written, no tumor drawn, but lymphoid aggregates exist
    assert normal.mask_path is None and normal.tumor_fraction == 0.0
    assert sorted(os.listdir(folder)) == ["n.tif", "t.tif", "t_mask.png"]
    r = render_slide(W, H, tumor=False, seed=8, mpp=MPP)
    assert not r.tumor_mask.any() and (r.kinds == LYMPH).sum() > 20


def test_mask_size_rounds_up():
    r = render_slide(1000, 777, tumor=True, seed=1, mpp=MPP, mask_downsample=16)
    assert r.image.shape == (777, 1000, 3)
    assert r.tumor_mask.shape == (math.ceil(777 / 16), math.ceil(1000 / 16))
    r = render_slide(1000, 777, tumor=True, seed=1, mpp=MPP, mask_downsample=32)
    assert r.tumor_mask.shape == (math.ceil(777 / 32), math.ceil(1000 / 32))


def test_mask_marks_the_tumor_texture(tumor_render):
    """Tiles under the mask show large crowded nuclei; tiles of lymphoid tissue do not. A mask
    shifted by a few hundred microns loses that agreement, so the check has teeth."""
    img, mask, kinds = tumor_render.image, tumor_render.tumor_mask == 255, tumor_render.kinds

    def tiles(sel: np.ndarray):
        out = []
        for i in range(0, sel.shape[0] - 6, 3):
            for j in range(0, sel.shape[1] - 6, 3):
                if sel[i : i + 6, j : j + 6].all():
                    out.append(img[i * 16 : i * 16 + 96, j * 16 : j * 16 + 96])
        return out

    lymph = tiles(kinds == LYMPH)
    for m, expect_good in ((mask, True), (np.roll(mask, (0, 40), axis=(0, 1)) & (kinds != 0), False)):
        pos = tiles(m & (kinds != 0))
        neg = lymph if expect_good else tiles(~m & (kinds == LYMPH))
        assert len(pos) >= 5 and len(neg) >= 5, (len(pos), len(neg))
        score = np.array([dark_object_size(t, MPP) for t in pos + neg])
        a = auc(score, np.r_[np.ones(len(pos)), np.zeros(len(neg))])
        if expect_good:
            assert a > 0.95
        else:
            assert a < 0.9


def test_rendering_is_deterministic():
    a = render_slide(1024, 768, tumor=True, seed=3, workers=1)
    b = render_slide(1024, 768, tumor=True, seed=3, workers=2)
    c = render_slide(1024, 768, tumor=True, seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.tumor_mask, b.tumor_mask)
    assert np.abs(a.image.astype(int) - c.image).mean() > 5


def test_blocks_join_without_seams():
    """A 2048 px slide is drawn in 1024 px blocks: the step between the two rows either side of
    the block border must look like the steps between neighbouring rows (a seam in the noise
    makes it about twice as large)."""
    img = render_slide(2048, 2048, tumor=True, seed=5).image.astype(float).mean(-1)
    row_steps = np.abs(np.diff(img, axis=0)).mean(1)
    neighbours = np.r_[row_steps[1013:1023], row_steps[1024:1034]]
    assert row_steps[1023] < 1.3 * np.median(neighbours)


# ---------------------------------------------------------------------------------------- cohort
def test_make_cohort_manifest_splits_and_rerun(tmp_path):
    manifest = make_cohort(tmp_path / "c", n_tumor=3, n_normal=3, size=(768, 512), seed=1)
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["slide", "label", "split", "mask", "case", "location"]
        rows = list(reader)
    assert len(rows) == 6
    assert len({r["case"] for r in rows}) == 6
    for r in rows:
        assert (manifest.parent / r["slide"]).is_file()
        assert r["label"] == ("1" if "tumor" in r["slide"] else "0") and r["location"] == "synthetic"
        if r["label"] == "1":
            assert (manifest.parent / r["mask"]).is_file()
        else:
            assert r["mask"] == ""
    for label in ("1", "0"):
        assert sorted(r["split"] for r in rows if r["label"] == label) == ["test", "train", "val"]
    assert sorted(os.listdir(manifest.parent / "masks")) == [
        f"synth-000{i}-tumor.png" for i in range(3)]
    records = load_manifest(manifest)  # the manifest the cohort writes is one the loader accepts
    assert sorted(r.label for r in records) == [0, 0, 0, 1, 1, 1]
    assert all((r.mask is not None) == (r.label == 1) for r in records)
    stamps = {p: p.stat().st_mtime_ns for p in (manifest.parent / "slides").iterdir()}
    make_cohort(tmp_path / "c", n_tumor=3, n_normal=3, size=(768, 512), seed=1)
    assert {p: p.stat().st_mtime_ns for p in (manifest.parent / "slides").iterdir()} == stamps
    # every file went through utils.atomic: no temporary file is left beside the outputs
    assert not [p for p in manifest.parent.rglob(".*")]


def test_cohort_split_counts_for_six_plus_six():
    rng = np.random.default_rng(0)
    splits = S._assign_splits(6, None, rng)
    assert sorted(splits) == ["test", "train", "train", "train", "train", "val"]


# ------------------------------------------------------------------------------------ patch sets
@pytest.fixture(scope="module")
def patch_set(tmp_path_factory):
    return make_patch_set(tmp_path_factory.mktemp("ps"), n_train=24, n_val=10, n_test=10, size=128, seed=2)


def test_patch_set_layout_and_labels(patch_set):
    train = sorted((patch_set / "training").glob("*.png"))
    assert len(train) == 24
    seen = np.zeros(4, int)
    for f in train:
        label = parse_patch_label(f.name)
        assert len(label) == 4 and sum(label) >= 1
        seen += label
        assert Image.open(f).size == (128, 128) and Image.open(f).mode == "RGB"
    assert (seen > 0).all()  # every class occurs in training
    palette_expect = [(205, 51, 51), (0, 255, 0), (65, 105, 225), (255, 165, 0), (255, 255, 255)]
    # the datasets' own class colours, from their one home (io.palettes), and white glass
    assert palette_expect == [CLASS_COLOURS[c] for c in ("TE", "NEC", "LYM", "TAS")] + [(255, 255, 255)]
    for split in ("val", "test"):
        imgs = sorted(p.name for p in (patch_set / split / "img").glob("*.png"))
        masks = sorted(p.name for p in (patch_set / split / "mask").glob("*.png"))
        assert imgs == masks and len(imgs) == 10
        for name in masks:
            mask = Image.open(patch_set / split / "mask" / name)
            assert mask.mode == "P"
            pal = mask.getpalette()
            assert [tuple(pal[3 * i : 3 * i + 3]) for i in range(5)] == palette_expect
            idx = np.asarray(mask)
            assert idx.shape == (128, 128) and idx.max() <= 4
            present = [int((idx == c).any()) for c in range(4)]
            assert parse_patch_label(name) == present  # label == classes in the mask, exactly
            img = np.asarray(Image.open(patch_set / split / "img" / name), dtype=float)
            if (idx == 4).sum() > 500:  # background index really is white glass
                assert img[idx == 4].mean() > 230
            for c in range(4):
                if (idx == c).sum() > 500:
                    assert img[idx == c].mean() < 215  # class regions are stained tissue


def test_patch_set_rerun_keeps_files(patch_set):
    files = sorted(patch_set.rglob("*.png"))
    stamps = [f.stat().st_mtime_ns for f in files]
    make_patch_set(patch_set, n_train=24, n_val=10, n_test=10, size=128, seed=2)
    assert sorted(patch_set.rglob("*.png")) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_parse_patch_label():
    assert parse_patch_label("train_00012[1 0 1 0].png") == [1, 0, 1, 0]
    assert parse_patch_label("a-b[0110].png") == [0, 1, 1, 0]  # BCSS-WSSS style
    with pytest.raises(ValueError, match="no"):
        parse_patch_label("x.png")
    with pytest.raises(ValueError, match="0/1"):
        parse_patch_label("x[1 2].png")


# ----------------------------------------------------------------------- colour is not enough
@pytest.fixture(scope="module")
def textures():
    n = 24
    return {kind: [render_texture(kind, 224, seed=1000 * k + i, mpp=1.0) for i in range(n)]
            for k, kind in enumerate(("tumor", "lymphoid", "necrosis", "tumor_stroma"))}


@pytest.mark.parametrize("mpp_factor", [1, 2])
def test_tumor_vs_lymphoid_colour_fails_texture_works(textures, mpp_factor):
    """Patch mean RGB (LDA) cannot tell tumor sheets from lymphoid aggregates; nuclear size can,
    also after down-sampling to 2 µm/px."""
    pos = [down2(t) if mpp_factor == 2 else t for t in textures["tumor"]]
    neg = [down2(t) if mpp_factor == 2 else t for t in textures["lymphoid"]]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    colour_auc = lda_holdout_auc(mean_rgb(pos + neg), y)
    texture = np.array([dark_object_size(t, 1.0 * mpp_factor) for t in pos + neg])
    assert colour_auc < 0.8, colour_auc
    assert auc(texture, y) > 0.9


def test_necrosis_vs_tumor_stroma_colour_fails_texture_works(textures):
    pos, neg = textures["necrosis"], textures["tumor_stroma"]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    assert lda_holdout_auc(mean_rgb(pos + neg), y) < 0.8
    assert auc(np.array([band_pass_energy(t, 1.0) for t in pos + neg]), y) > 0.9


def test_colour_test_can_fail():
    """Sanity check of the statistic: classes that do differ in colour are caught."""
    pale = [render_texture("tumor_stroma", 96, seed=i, mpp=1.0) for i in range(12)]
    dark = [render_texture("lymphoid", 96, seed=50 + i, mpp=1.0) for i in range(12)]
    assert lda_holdout_auc(mean_rgb(pale + dark), np.r_[np.ones(12), np.zeros(12)]) > 0.95


# -------------------------------------------------------------------------------- validation
def test_invalid_arguments_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="tif"):
        make_slide(tmp_path / "x.png", 256, 256, tumor=True, seed=0)
    with pytest.raises(ValueError, match="does not exist"):
        make_slide(tmp_path / "missing" / "x.tif", 256, 256, tumor=True, seed=0)
    with pytest.raises(ValueError, match="mpp"):
        render_slide(256, 256, tumor=True, seed=0, mpp=-1.0)
    with pytest.raises(ValueError, match="width and height"):
        render_slide(10, 256, tumor=True, seed=0)
    with pytest.raises(ValueError, match="tumor_fraction"):
        render_slide(256, 256, tumor=True, seed=0, tumor_fraction=(0.5, 0.2))
    with pytest.raises(ValueError, match="class_names"):
        make_patch_set(tmp_path / "p", class_names=("TE", "XYZ"))
    with pytest.raises(ValueError, match="kind"):
        render_texture("bone")
    with pytest.raises(ValueError, match="make_cohort"):
        make_cohort(tmp_path / "c", n_tumor=0, n_normal=0)
