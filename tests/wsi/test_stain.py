"""Stain maths: OD round trip, HED jitter, Reinhard and Macenko normalisation, the config factory."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from monai_wsseg.wsi.stain import (
    HED_STAINS,
    TISSUE_OD,
    MacenkoNormalizer,
    RandStainAugment,
    ReinhardNormalizer,
    StainTransform,
    hed_jitter,
    od_to_rgb,
    rgb_to_od,
    slide_glass,
    stain_normalizer,
    tissue_pixels,
)

H_OD = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
E_OD = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def two_stain_image(h: int = 96, w: int = 96, seed: int = 0, stains=(H_OD, E_OD), glass: float = 0.2) -> np.ndarray:
    """Beer–Lambert RGB ``(h, w, 3)`` uint8 of random H and E amounts; a ``glass`` share of pixels is blank."""
    rng = np.random.default_rng(seed)
    conc = rng.gamma(2.0, 0.15, size=(h * w, 2))
    conc[rng.uniform(size=h * w) < glass] = 0.0
    return od_to_rgb(conc @ np.stack(stains), uint8=True).reshape(h, w, 3)


def lab_stats(rgb: np.ndarray, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """lαβ mean and std of the tissue pixels (or of ``where``), computed independently of the module."""
    px = (tissue_pixels(rgb) if where is None else rgb[where]).astype(np.float64)
    lms = ((px + 1) / 256) @ np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782],
                                      [0.0241, 0.1288, 0.8444]]).T
    t = np.diag([3**-0.5, 6**-0.5, 2**-0.5]) @ np.array([[1.0, 1, 1], [1, 1, -2], [1, -1, 0]])
    lab = np.log10(lms) @ t.T
    return lab.mean(0), lab.std(0)


def cielab_mean(rgb: np.ndarray, where: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb[where][None])[0].mean(0)


# ------------------------------------------------------------------------------------ optical density
def test_od_round_trip_numpy_and_torch():
    v = np.arange(256, dtype=np.uint8)
    od = rgb_to_od(v)
    assert od[255] == 0 and od[0] == pytest.approx(np.log10(256)) and np.all(np.diff(od) < 0)
    assert np.array_equal(od_to_rgb(od, uint8=True), v)
    np.testing.assert_allclose(od_to_rgb(od), v / 255, atol=1e-6)
    np.testing.assert_allclose(rgb_to_od(v / 255.0), od, atol=1e-6)  # floats in [0, 1] agree with uint8
    t = torch.from_numpy(v)
    assert torch.equal(od_to_rgb(rgb_to_od(t), uint8=True), t)
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(od_to_rgb(rgb_to_od(x)), x, atol=1e-9, rtol=0)


def test_hed_matrix_rows_are_unit_stain_vectors():
    np.testing.assert_allclose(np.linalg.norm(HED_STAINS, axis=1), 1.0)
    np.testing.assert_allclose(HED_STAINS[0], H_OD)


def test_tissue_pixels_drop_glass_and_subsample():
    rgb = np.full((10, 10, 3), 250, np.uint8)
    rgb[:3] = (150, 80, 160)
    kept = tissue_pixels(rgb)
    assert kept.shape == (30, 3) and (kept == (150, 80, 160)).all()
    assert rgb_to_od(np.uint8(250)) * 3 < TISSUE_OD
    assert tissue_pixels(rgb, max_pixels=7).shape == (7, 3)
    with pytest.raises(ValueError, match="uint8"):
        tissue_pixels(rgb.astype(float))


# ------------------------------------------------------------------------------------ HED jitter
def test_hed_jitter_zero_is_identity():
    bag = torch.rand(6, 3, 8, 8)
    out = hed_jitter(bag, np.ones((6, 3)), np.zeros((6, 3)))
    assert torch.equal(out, bag) and out.data_ptr() != bag.data_ptr()
    aug = RandStainAugment(sigma=0.0, bias=0.0)
    aug.set_random_state(0)
    assert torch.equal(aug(bag), bag)


def test_hed_jitter_changes_each_patch_and_stays_in_unit_range():
    same = torch.from_numpy(two_stain_image(8, 8)).permute(2, 0, 1)[None].repeat(16, 1, 1, 1)
    aug = RandStainAugment(sigma=0.2, bias=0.2)
    aug.set_random_state(3)
    out = aug(same)
    assert out.dtype == torch.float32 and out.shape == same.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert len({out[i].numpy().tobytes() for i in range(16)}) == 16
    assert (out - same.float() / 255).abs().amax() > 0.05


def test_hed_jitter_matches_per_patch_unmixing():
    rng = np.random.default_rng(1)
    bag = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scale, shift = rng.uniform(0.8, 1.2, (5, 3)), rng.uniform(-0.1, 0.1, (5, 3))
    out = hed_jitter(bag, scale, shift)
    for i in range(5):
        od = rgb_to_od(bag[i].permute(1, 2, 0).reshape(-1, 3).numpy())
        conc = od @ np.linalg.inv(HED_STAINS)
        ref = od_to_rgb((conc * scale[i] + shift[i]) @ HED_STAINS).reshape(4, 4, 3)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), ref, atol=2e-5)


def test_hed_jitter_reproducible_and_errors():
    bag = torch.rand(4, 3, 6, 6)
    a, b = RandStainAugment(0.1, 0.05), RandStainAugment(0.1, 0.05)
    a.set_random_state(9)
    b.set_random_state(9)
    assert torch.equal(a(bag), b(bag))
    with pytest.raises(ValueError, match="must be \\(4, 3\\)"):
        hed_jitter(bag, np.ones((3, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=re.escape("sigma=1.5 must lie in")):
        RandStainAugment(sigma=1.5)
    with pytest.raises(ValueError, match=re.escape("bias=-0.1 must lie in")):
        RandStainAugment(bias=-0.1)


# ------------------------------------------------------------------------------------ Reinhard
def test_reinhard_removes_a_colour_cast():
    reference_img = two_stain_image(seed=0)
    ref = ReinhardNormalizer.fit(reference_img.reshape(-1, 3))
    assert json.loads(json.dumps(ref)) == ref  # JSON-ready
    # Another slide: other stain amounts and a per-channel cast (a scanner's or a stain batch's).
    cast = np.clip(two_stain_image(seed=1).astype(np.float64) * (0.85, 1.0, 0.9) + (0, 8, 20), 0, 255)
    source = cast.astype(np.uint8)
    transform = ReinhardNormalizer(ref).for_slide(tissue_pixels(source))
    out = transform(source)
    assert out.dtype == np.uint8 and out.shape == source.shape
    tissue = rgb_to_od(source).sum(-1) > TISSUE_OD  # the pixels the slide's fit saw
    mean_ref, std_ref = lab_stats(reference_img)
    mean_out, std_out = lab_stats(out, tissue)
    np.testing.assert_allclose(mean_out, mean_ref, atol=1e-3)  # lαβ: up to uint8 rounding and clipping
    np.testing.assert_allclose(std_out, std_ref, rtol=0.02)
    # In CIELAB, an independent check: the cast moved a* by ~11 units, the normalisation brings it back.
    lab_ref = cielab_mean(reference_img, rgb_to_od(reference_img).sum(-1) > TISSUE_OD)
    assert np.abs(cielab_mean(source, tissue) - lab_ref).max() > 8
    np.testing.assert_allclose(cielab_mean(out, tissue), lab_ref, atol=1.5)


def test_reinhard_fitted_on_its_own_reference_is_the_identity():
    img = two_stain_image(seed=2)
    norm = ReinhardNormalizer(ReinhardNormalizer.fit(img.reshape(-1, 3)))
    assert np.array_equal(norm.for_slide(img.reshape(-1, 3))(img), img)


# ------------------------------------------------------------------------------------ Macenko
def test_macenko_recovers_the_stain_vectors():
    ref = MacenkoNormalizer.fit(two_stain_image(128, 128, seed=0).reshape(-1, 3))
    h, e = np.asarray(ref["stains"])
    assert h @ H_OD > 0.99 and e @ E_OD > 0.99  # within ~8° of the true directions, H first
    assert np.all(np.asarray(ref["max_concentrations"]) > 0)


def test_macenko_maps_one_stain_set_onto_another():
    target = two_stain_image(seed=0)
    other = (np.array([0.55, 0.78, 0.30]), np.array([0.15, 0.97, 0.20]))  # another lab's hematoxylin/eosin
    source = two_stain_image(seed=0, stains=tuple(v / np.linalg.norm(v) for v in other))
    norm = MacenkoNormalizer(MacenkoNormalizer.fit(target.reshape(-1, 3)))
    out = norm.for_slide(source.reshape(-1, 3))(source)
    before = np.abs(source.astype(int) - target).mean()
    after = np.abs(out.astype(int) - target).mean()
    assert after < 0.3 * before
    assert (out[(source == 255).all(-1)] == 255).all()  # glass stays glass


def tinted(rgb: np.ndarray, glass) -> np.ndarray:
    """``rgb`` seen through a tinted glass: every pixel's light is the glass's (Beer–Lambert)."""
    return od_to_rgb(rgb_to_od(rgb) + rgb_to_od(np.asarray(glass, np.uint8)), uint8=True)


def test_slide_glass_is_the_background_median_or_none():
    thumb = np.full((20, 20, 3), (236, 240, 226), np.uint8)
    tissue = np.zeros((20, 20), bool)
    tissue[:, :10] = True
    thumb[tissue] = (150, 80, 160)
    assert np.array_equal(slide_glass(thumb, tissue), [236, 240, 226])
    assert slide_glass(thumb, np.ones((20, 20), bool)) is None  # no glass to see
    thumb[~tissue] = (180, 240, 226)  # too dark to be glass: ink, tissue or an artefact
    assert slide_glass(thumb, tissue) is None


def test_macenko_takes_the_glass_tint_off():
    """A second lab's tinted glass: with the glass colour given, the map lands on the untinted slide's."""
    target = two_stain_image(seed=0)
    glass = (236, 240, 226)
    source = tinted(target, glass)
    norm = MacenkoNormalizer(MacenkoNormalizer.fit(target.reshape(-1, 3)))
    with_glass = norm.for_slide(source.reshape(-1, 3), glass=np.array(glass, float))(source)
    without = norm.for_slide(source.reshape(-1, 3))(source)
    err_with = np.abs(with_glass.astype(int) - target).mean()
    err_without = np.abs(without.astype(int) - target).mean()
    assert err_with < 1.5 and err_with < 0.5 * err_without
    assert (with_glass[(target == 255).all(-1)] >= 253).all()  # the tinted glass comes out white


def test_transform_is_the_same_for_every_tile():
    """Fitted once per slide: a tile's result does not depend on which tile or batch it is mapped in."""
    img = two_stain_image(100, 130, seed=4)
    ref_img = two_stain_image(seed=5, stains=(E_OD, H_OD))  # a strong change, far from the identity
    for cls in (ReinhardNormalizer, MacenkoNormalizer):
        transform = cls(cls.fit(ref_img.reshape(-1, 3))).for_slide(img.reshape(-1, 3))
        whole = transform(img)
        assert not np.array_equal(whole, img)
        for y, x, h, w in [(0, 0, 40, 40), (37, 61, 50, 33), (99, 129, 1, 1)]:
            assert np.array_equal(transform(img[y : y + h, x : x + w]), whole[y : y + h, x : x + w])
        batch = torch.from_numpy(np.stack([img[:32, :32], img[50:82, 90:122]])).permute(0, 3, 1, 2)
        mapped = transform(batch)
        assert mapped.shape == batch.shape and mapped.dtype == torch.uint8
        assert np.array_equal(mapped[1].permute(1, 2, 0).numpy(), whole[50:82, 90:122])
        assert torch.equal(transform(batch[0]), mapped[0])  # (3, H, W) too


def test_transform_matches_the_direct_formulas():
    img = two_stain_image(16, 16, seed=6)
    m = np.array([[1.1, 0.05, 0.0], [-0.02, 0.9, 0.03], [0.0, 0.1, 1.0]])
    off = np.array([0.01, -0.02, 0.03])
    od = rgb_to_od(img.reshape(-1, 3)).astype(np.float64)
    expected = od_to_rgb(od @ m.T + off, uint8=True).reshape(img.shape)
    assert np.abs(StainTransform("od", m, off)(img).astype(int) - expected).max() <= 1
    # lab: the affine map acts on log10 of Reinhard's LMS of (v + 1) / 256.
    a = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
    log_lms = np.log10(((img.reshape(-1, 3) + 1.0) / 256) @ a.T)
    v = (10 ** (log_lms @ m.T + off)) @ np.linalg.inv(a).T * 256 - 1
    expected = np.rint(np.clip(v, 0, 255)).astype(np.uint8).reshape(img.shape)
    assert np.abs(StainTransform("lab", m, off)(img).astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        StainTransform("od", m, off)(img.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 \\(B, 3, H, W\\)"):
        StainTransform("od", m, off)(torch.zeros(2, 4, 4, 3, dtype=torch.uint8))


def test_fit_errors_name_the_problem():
    glass = np.full((500, 3), 245, np.uint8)
    with pytest.raises(ValueError, match="only 0 tissue pixels"):
        ReinhardNormalizer.fit(glass)
    one_stain = od_to_rgb(np.random.default_rng(0).uniform(0.1, 1, (500, 1)) * H_OD, uint8=True)
    with pytest.raises(ValueError, match="almost parallel"):
        MacenkoNormalizer.fit(one_stain)
    with pytest.raises(ValueError, match="\\(M, 3\\) uint8"):
        MacenkoNormalizer.fit(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="'std' must be 3 finite positive"):
        ReinhardNormalizer({"method": "reinhard", "mean": [0, 0, 0], "std": [1, 0, 1]})
    with pytest.raises(ValueError, match="for method 'reinhard', not 'macenko'"):
        MacenkoNormalizer({"method": "reinhard", "mean": [0, 0, 0], "std": [1, 1, 1]})


# ------------------------------------------------------------------------------------ factory
def test_factory(tmp_path):
    img = two_stain_image(seed=0).reshape(-1, 3)
    refs = {"reinhard": ReinhardNormalizer.fit(img), "macenko": MacenkoNormalizer.fit(img), "source": {}}
    path = tmp_path / "stain.json"
    path.write_text(json.dumps(refs))
    assert stain_normalizer(None) is None and stain_normalizer("none", path) is None
    assert isinstance(stain_normalizer("reinhard", path), ReinhardNormalizer)
    assert isinstance(stain_normalizer("Macenko", str(path)), MacenkoNormalizer)
    assert isinstance(stain_normalizer("macenko", refs), MacenkoNormalizer)
    assert isinstance(stain_normalizer("reinhard", refs["reinhard"]), ReinhardNormalizer)
    with pytest.raises(ValueError, match=r"needs a reference; run scripts/compute_stats\.py .*--stain_json"):
        stain_normalizer("macenko", None)
    with pytest.raises(ValueError, match=re.escape("missing.json not found; run scripts/compute_stats.py")):
        stain_normalizer("reinhard", tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown method 'vahadane'"):
        stain_normalizer("vahadane", path)
    with pytest.raises(ValueError, match="no 'macenko' entry"):
        stain_normalizer("macenko", {"reinhard": refs["reinhard"]})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape("bad.json is not valid JSON")):
        stain_normalizer("reinhard", tmp_path / "bad.json")
