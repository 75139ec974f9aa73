"""Bag transforms: exact dihedral geometry, colour-jitter maths, standardisation, and the statistics script."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from monai.transforms import Compose, Randomizable

from monai_wsseg.datasets.discovery import find_manifest_or_slides
from monai_wsseg.mil.bags import SlideBagDataset
from monai_wsseg.mil.transforms import (
    BagStandardize,
    RandBagAugment,
    _colour_jitter,
    _dihedral,
    bag_transform,
    gaussian_blur,
    hue_matrices,
)
from tests.conftest import load_script

NO_COLOUR = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
MEAN, STD = (0.7, 0.5, 0.65), (0.15, 0.2, 0.1)


def random_bag(n: int = 16, p: int = 8, seed: int = 0) -> torch.Tensor:
    """Noise patches: their 8 dihedral versions are all different (with overwhelming probability)."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, p, p), dtype=np.uint8))


def dihedral_versions(patch: torch.Tensor) -> list[torch.Tensor]:
    """The 8 versions of a ``(3, P, P)`` patch, indexed like RandBagAugment's codes (k + 4·flip)."""
    rots = [torch.rot90(patch, k, dims=(-2, -1)) for k in range(4)]
    return rots + [r.flip(-1) for r in rots]


def which_dihedral(out: torch.Tensor, patch: torch.Tensor) -> int:
    """Index of the dihedral version of ``patch`` (uint8) that ``out`` (float in [0, 1]) equals exactly, or -1."""
    for code, version in enumerate(dihedral_versions(patch.float() / 255)):
        if torch.equal(out, version):
            return code
    return -1


# ------------------------------------------------------------------------------------ RandBagAugment
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_output_dtype_shape_range(dtype):
    bag = random_bag(12, 10)
    x = bag if dtype == torch.uint8 else (bag.to(dtype) / 255)
    aug = RandBagAugment(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2)  # strong: forces clipping
    aug.set_random_state(1)
    out = aug(x)
    assert out.dtype == torch.float32 and out.shape == bag.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out.min()) == 0.0 or float(out.max()) == 1.0  # clipping happened: strong jitter on noise


def test_geometry_is_exactly_one_of_the_8_dihedral_transforms():
    bag = random_bag(64, 8)
    aug = RandBagAugment(**NO_COLOUR)
    aug.set_random_state(0)
    out = aug(bag)
    codes = [which_dihedral(out[i], bag[i]) for i in range(len(bag))]
    assert -1 not in codes
    assert codes == aug.codes.tolist()  # and it is the one that was drawn


def test_all_8_transforms_occur_uniformly():
    bag = random_bag(400, 4, seed=3)
    aug = RandBagAugment(**NO_COLOUR)
    aug.set_random_state(0)
    out = aug(bag)
    counts = np.bincount([which_dihedral(out[i], bag[i]) for i in range(len(bag))], minlength=8)
    assert counts.min() > 0 and counts.sum() == 400
    assert np.all(np.abs(counts - 50) < 5 * math.sqrt(50 * 7 / 8))  # binomial(400, 1/8) within 5 sigma


@pytest.mark.parametrize("rot90,flip,allowed",
                         [(True, False, {0, 1, 2, 3}), (False, True, {0, 4}), (False, False, {0})])
def test_geometry_options(rot90, flip, allowed):
    bag = random_bag(80, 4, seed=2)
    aug = RandBagAugment(rot90=rot90, flip=flip, **NO_COLOUR)
    aug.set_random_state(0)
    out = aug(bag)
    assert {which_dihedral(out[i], bag[i]) for i in range(len(bag))} == allowed


def test_flips_of_non_square_patches():
    bag = torch.from_numpy(np.random.default_rng(8).integers(0, 256, (40, 3, 6, 9), dtype=np.uint8))
    aug = RandBagAugment(rot90=False, **NO_COLOUR)
    aug.set_random_state(0)
    out = aug(bag)
    for i, code in enumerate(aug.codes.tolist()):
        assert torch.equal(out[i], (bag[i].flip(-1) if code == 4 else bag[i]).float() / 255)
    assert set(aug.codes.tolist()) == {0, 4}


def test_patches_are_augmented_independently():
    same = random_bag(1, 8).repeat(32, 1, 1, 1)
    aug = RandBagAugment(rot90=False, flip=False)  # colour only
    aug.set_random_state(0)
    out = aug(same)
    assert len({tuple(f) for f in aug.factors.round(12).tolist()}) == 32  # a draw per patch
    assert len({out[i].numpy().tobytes() for i in range(32)}) == 32

    geo = RandBagAugment(**NO_COLOUR)
    geo.set_random_state(0)
    geo(same)
    assert len(set(geo.codes.tolist())) > 1

    # A patch's result depends on its own pixels only (e.g. contrast uses the patch mean, not the bag mean).
    bag = random_bag(8, 8, seed=4)
    other = bag.clone()
    other[1:] = 255 - other[1:]
    a, b = RandBagAugment(), RandBagAugment()
    a.set_random_state(5)
    b.set_random_state(5)
    assert torch.equal(a(bag)[0], b(other)[0])


def test_no_jitter_no_geometry_is_identity():
    bag = random_bag(6, 8)
    aug = RandBagAugment(rot90=False, flip=False, **NO_COLOUR)
    assert torch.equal(aug(bag), bag.float() / 255)
    x = bag.float() / 255
    out = aug(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()  # a copy, never the caller's tensor
    # prob = 0: nothing is augmented whatever the jitter strengths.
    assert torch.equal(RandBagAugment(prob=0.0, brightness=0.5, hue=0.3)(bag), bag.float() / 255)


def test_prob_augments_about_that_share_of_patches():
    bag = random_bag(400, 4, seed=6)
    aug = RandBagAugment(prob=0.25, **NO_COLOUR)
    aug.set_random_state(0)
    aug(bag)
    # Identity patches are the untouched ones plus the augmented ones that drew the identity (1/8).
    share = float(np.mean(aug.codes == 0))
    assert abs(share - (0.75 + 0.25 / 8)) < 0.08


def test_hue_zero_is_identity_and_hue_keeps_grey_and_luma():
    assert np.array_equal(hue_matrices([0.0])[0], np.eye(3))  # exactly, by construction
    x = random_bag(5, 8).float() / 255
    assert torch.equal(_colour_jitter(x, np.tile([1.0, 1.0, 1.0, 0.0], (5, 1))), x)

    shifts = np.linspace(-0.5, 0.5, 11)
    hm = hue_matrices(shifts)
    np.testing.assert_allclose(hm @ np.ones(3), np.ones((11, 3)), atol=1e-12)  # grey is a fixed point
    luma = np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(luma @ hm, np.tile(luma, (11, 1)), atol=1e-12)
    np.testing.assert_allclose(hue_matrices([0.1])[0] @ hue_matrices([-0.1])[0], np.eye(3), atol=1e-12)

    # Grey patches stay grey under saturation and hue jitter (brightness and contrast would change them).
    grey = torch.linspace(0, 1, 16).view(1, 1, 4, 4).repeat(8, 3, 1, 1)
    aug = RandBagAugment(rot90=False, flip=False, brightness=0, contrast=0, saturation=0.9, hue=0.5)
    aug.set_random_state(0)
    torch.testing.assert_close(aug(grey), grey, atol=1e-6, rtol=0)


def test_colour_jitter_matches_a_step_by_step_computation():
    x = random_bag(6, 8, seed=7).double() / 255
    rng = np.random.default_rng(0)
    factors = np.column_stack([rng.uniform(0.8, 1.2, (6, 3)), rng.uniform(-0.1, 0.1, 6)])
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    expected = []
    for i, (b, c, s, h) in enumerate(factors):
        y = x[i : i + 1] * b
        y = c * y + (1 - c) * (y * luma).sum(1, keepdim=True).mean()
        grey = (y * luma).sum(1, keepdim=True)
        y = s * y + (1 - s) * grey
        y = torch.einsum("ij,njhw->nihw", torch.from_numpy(hue_matrices([h])[0]), y)
        expected.append(y.clamp(0, 1))
    out = _colour_jitter(x.float(), factors)
    torch.testing.assert_close(out, torch.cat(expected).float(), atol=2e-6, rtol=0)


def test_colour_jitter_agrees_with_torchvision():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.3  # no clipping
    for idx, fn in enumerate((tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation)):
        factors = np.tile([1.0, 1.0, 1.0, 0.0], (2, 1))
        factors[:, idx] = 1.15
        ref = torch.stack([fn(p, 1.15) for p in x])
        torch.testing.assert_close(_colour_jitter(x, factors), ref, atol=1e-4, rtol=0)  # luma 0.299 vs 0.2989
    # Hue: not HSV, but the same direction of change.
    factors = np.tile([1.0, 1.0, 1.0, 0.03], (2, 1))
    ours, ref = _colour_jitter(x, factors) - x, tvf.adjust_hue(x, 0.03) - x
    assert torch.nn.functional.cosine_similarity(ours.flatten(), ref.flatten(), dim=0) > 0.5


def test_reproducible_with_set_random_state():
    bag = random_bag(10, 8)
    a, b, c = RandBagAugment(), RandBagAugment(), RandBagAugment()
    a.set_random_state(123)
    b.set_random_state(123)
    c.set_random_state(124)
    first = a(bag)
    assert torch.equal(first, b(bag))
    assert not torch.equal(first, c(bag))
    assert not torch.equal(first, a(bag))  # the stream moves on
    assert torch.equal(a(bag, randomize=False), b(bag, randomize=True))  # reuse of the last draws


def test_augment_errors():
    with pytest.raises(ValueError, match="square"):
        RandBagAugment()(torch.zeros(2, 3, 8, 6, dtype=torch.uint8))
    assert RandBagAugment(rot90=False)(torch.zeros(2, 3, 8, 6, dtype=torch.uint8)).shape == (2, 3, 8, 6)
    with pytest.raises(ValueError, match=r"\(N, 3, P, P\)"):
        RandBagAugment()(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RandBagAugment()(torch.full((1, 3, 4, 4), -0.5))  # standardised before augmenting
    with pytest.raises(ValueError, match=r"dtype|uint8"):
        RandBagAugment()(torch.zeros(1, 3, 4, 4, dtype=torch.int32))
    for bad in (dict(brightness=-0.1), dict(contrast=1.5), dict(hue=0.6), dict(prob=2.0)):
        with pytest.raises(ValueError):
            RandBagAugment(**bad)


# ------------------------------------------------------------------------------------ BagStandardize
def test_standardize_matches_hand_computation():
    bag = random_bag(3, 5)
    expected = np.empty((3, 3, 5, 5))
    for ch in range(3):
        expected[:, ch] = (bag[:, ch].numpy().astype(np.float64) / 255 - MEAN[ch]) / STD[ch]
    std = BagStandardize(MEAN, STD)
    out = std(bag)
    assert out.dtype == torch.float32 and out.shape == bag.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6, rtol=0)
    x = bag.double() / 255
    before = x.clone()
    np.testing.assert_allclose(std(x).numpy(), expected, atol=1e-6, rtol=0)  # float: already in [0, 1]
    assert torch.equal(x, before)
    assert torch.equal(std(bag), out)


@pytest.mark.parametrize("mean,std,match", [
    ((0.5, 0.5), STD, "3"), (MEAN, (0.1, 0.2, 0.3, 0.4), "3"), (MEAN, (0.1, 0.0, 0.1), "> 0"),
    (MEAN, (0.1, -0.2, 0.1), "> 0"), ((0.5, float("nan"), 0.5), STD, "finite"), ((180.0, 130.0, 170.0), STD, "units"),
    ("abc", STD, "3"),
])
def test_standardize_rejects_bad_statistics(mean, std, match):
    with pytest.raises(ValueError, match=match):
        BagStandardize(mean, std)


# ------------------------------------------------------------------------------------ bag_transform
def test_eval_transform_has_no_randomness():
    tf = bag_transform(False, MEAN, STD, brightness=0.3)  # augment arguments are validated, then unused
    assert isinstance(tf, Compose)
    assert not any(isinstance(t, Randomizable) for t in tf.transforms)
    bag = random_bag(4, 8)
    first = tf(bag)
    assert torch.equal(first, tf(bag)) and torch.equal(first, BagStandardize(MEAN, STD)(bag))
    with pytest.raises(TypeError):
        bag_transform(False, MEAN, STD, brightnes=0.3)


def test_train_transform_augments_then_standardizes():
    bag = random_bag(4, 8)
    tf = bag_transform(True, MEAN, STD, **NO_COLOUR)
    tf.set_random_state(7)
    out = tf(bag)
    geo = tf.transforms[0](bag, randomize=False)  # the draws the Compose just used
    assert all(which_dihedral(geo[i], bag[i]) >= 0 for i in range(len(bag)))
    torch.testing.assert_close(out, BagStandardize(MEAN, STD)(geo), atol=1e-6, rtol=0)
    again = bag_transform(True, MEAN, STD, **NO_COLOUR)
    again.set_random_state(7)  # Compose seeds its random members from its own seed
    assert torch.equal(again(bag), out)
    assert not torch.equal(tf(bag), out)  # random at training


def test_bag_transform_from_bundle_config():
    from monai.bundle import ConfigParser

    parser = ConfigParser({"train_transform": {
        "_target_": "monai_wsseg.mil.transforms.bag_transform", "train": True, "mean": list(MEAN), "std": list(STD),
        "hue": 0.05,
    }})
    tf = parser.get_parsed_content("train_transform")
    assert isinstance(tf.transforms[0], RandBagAugment) and tf.transforms[0].hue == 0.05
    assert tf(random_bag(2, 8)).shape == (2, 3, 8, 8)


# ------------------------------------------------------------------------------------ compute_stats.py
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from monai_wsseg.synthetic.generator import make_cohort

    root = tmp_path_factory.mktemp("stats_cohort")
    make_cohort(root, n_tumor=1, n_normal=1, size=(512, 512), seed=0, splits=["train", "train"])
    return root


BAG = dict(bag_size=6, patch_size=64, mpp=0.5)


def direct_stats(root, bags_per_slide: int) -> tuple[np.ndarray, np.ndarray]:
    records = [r for r in find_manifest_or_slides(root) if r.split == "train"]
    ds = SlideBagDataset(records, transform=lambda b: b, **BAG)
    pixels = []
    for epoch in range(bags_per_slide):
        ds.set_epoch(epoch)
        pixels += [ds[i]["image"].permute(1, 0, 2, 3).reshape(3, -1).numpy() for i in range(len(ds))]
    x = np.concatenate(pixels, axis=1).astype(np.float64) / 255
    return x.mean(axis=1), x.std(axis=1)


def test_compute_stats_equals_direct_computation(cohort, tmp_path, capsys):
    out = tmp_path / "sub" / "stats.json"
    result = load_script("compute_stats").main([
        "--dataset_dir", str(cohort), "--bags-per-slide", "2", "--bag_size", "6", "--patch_size", "64",
        "--mpp", "0.5", "--json", str(out),
    ])
    mean, std = direct_stats(cohort, 2)
    np.testing.assert_allclose(result["mean"], mean, atol=1e-6, rtol=0)
    np.testing.assert_allclose(result["std"], std, atol=1e-6, rtol=0)
    saved = json.loads(out.read_text())
    assert saved["mean"] == result["mean"] and saved["std"] == result["std"]
    assert saved["bags"] == 4 and saved["pixels_per_channel"] == 4 * 6 * 64 * 64 and not saved["skipped"]
    assert [p.name for p in out.parent.iterdir()] == ["stats.json"]  # no temp file left
    snippet = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(snippet) == {"mean", "std"}
    np.testing.assert_allclose(snippet["mean"], mean, atol=1e-6, rtol=0)  # rounded to 6 decimals
    BagStandardize(snippet["mean"], snippet["std"])  # pastes into the transform as is


def test_compute_stats_skips_unreadable_slides(cohort, tmp_path, capsys):
    import shutil

    root = tmp_path / "cohort"
    shutil.copytree(cohort, root)
    (root / "slides" / "broken.tif").write_bytes(b"not a tiff at all")
    with open(root / "manifest.csv", "a") as fh:  # last, so the good slides keep their draw seeds
        fh.write("slides/broken.tif,0,train,,broken,synthetic\n")
    result = load_script("compute_stats").main(["--dataset_dir", str(root), "--bags-per-slide", "1", "--bag_size", "6",
                                 "--patch_size", "64"])
    assert list(result["skipped"]) == [str(root / "slides" / "broken.tif")]
    assert result["slides"] == 2 and result["bags"] == 2
    assert "broken.tif" in capsys.readouterr().err
    mean, std = direct_stats(cohort, 1)
    np.testing.assert_allclose(result["mean"], mean, atol=1e-6, rtol=0)
    np.testing.assert_allclose(result["std"], std, atol=1e-6, rtol=0)


def test_compute_stats_rejects_an_empty_split(cohort):
    with pytest.raises(SystemExit, match="no slides in split 'val'"):
        load_script("compute_stats").main(["--dataset_dir", str(cohort), "--split", "val"])


def test_dataset_with_bag_transform(cohort):
    records = [r for r in find_manifest_or_slides(cohort) if r.split == "train"]
    ds = SlideBagDataset(records, transform=bag_transform(True, MEAN, STD), **BAG)
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (6, 3, 64, 64)
    assert torch.isfinite(item["image"]).all()


# ------------------------------------------------------------------------------------ HED stain jitter
def test_hed_defaults_keep_the_old_stream_and_output_bit_for_bit():
    bag = random_bag(12, 8, seed=11)
    old, new = RandBagAugment(), RandBagAugment(hed_sigma=0.0, hed_bias=0.0)
    old.set_random_state(21)
    new.set_random_state(21)
    for _ in range(2):  # the stream stays in step over successive bags too
        assert torch.equal(old(bag), new(bag))
    assert old.R.uniform() == new.R.uniform()
    assert not new.stain and np.array_equal(new.hed_scale, np.ones((12, 3)))
    # The draws are today's sequence exactly (k, flip, b, c, s, h, keep), with nothing after it.
    replay = np.random.RandomState(8)
    fresh = RandBagAugment(hed_sigma=0.0, hed_bias=0.0, prob=0.5)
    fresh.set_random_state(8)
    fresh.randomize(12)
    k, f = replay.randint(0, 4, size=12), replay.randint(0, 2, size=12)
    bcs = [replay.uniform(1 - v, 1 + v, size=12) for v in (0.1, 0.1, 0.1)]
    h, keep = replay.uniform(-0.02, 0.02, size=12), replay.uniform(size=12) >= 0.5
    assert np.array_equal(fresh.codes, np.where(keep, 0, k + 4 * f))
    assert np.array_equal(fresh.factors[~keep], np.stack([*bcs, h], axis=1)[~keep])
    assert fresh.R.uniform() == replay.uniform()
    # Enabling it leaves every earlier draw as it was: the HED factors are drawn last.
    hed = RandBagAugment(hed_sigma=0.1, hed_bias=0.05)
    ref = RandBagAugment()
    hed.set_random_state(4)
    ref.set_random_state(4)
    hed(bag)
    ref(bag)
    assert np.array_equal(hed.codes, ref.codes) and np.array_equal(hed.factors, ref.factors)


def test_hed_jitter_in_the_bag_augmentation():
    same = random_bag(1, 8, seed=12).repeat(24, 1, 1, 1)
    aug = RandBagAugment(rot90=False, flip=False, **NO_COLOUR, hed_sigma=0.2, hed_bias=0.1)
    aug.set_random_state(0)
    out = aug(same)
    assert out.dtype == torch.float32 and float(out.min()) >= 0 and float(out.max()) <= 1
    assert len({out[i].numpy().tobytes() for i in range(24)}) == 24  # its own stain draw per patch
    assert np.all(np.abs(aug.hed_scale - 1) <= 0.2) and np.all(np.abs(aug.hed_shift) <= 0.1)
    from monai_wsseg.wsi.stain import hed_jitter

    torch.testing.assert_close(out, hed_jitter(same.float() / 255, aug.hed_scale, aug.hed_shift), atol=0, rtol=0)
    again = RandBagAugment(rot90=False, flip=False, **NO_COLOUR, hed_sigma=0.2, hed_bias=0.1)
    again.set_random_state(0)
    assert torch.equal(again(same), out)


def test_hed_step_sits_between_geometry_and_colour():
    from monai_wsseg.wsi.stain import hed_jitter

    bag = random_bag(40, 8, seed=13)
    aug = RandBagAugment(hed_sigma=0.1, hed_bias=0.05, prob=0.5)
    aug.set_random_state(2)
    out = aug(bag)
    stained = hed_jitter(_dihedral(bag, aug.codes).float() / 255, aug.hed_scale, aug.hed_shift)
    assert torch.equal(out, _colour_jitter(stained, aug.factors))
    # Patches that prob leaves alone get no stain jitter either.
    plain = np.all(aug.hed_scale == 1.0, axis=1) & np.all(aug.hed_shift == 0.0, axis=1)
    assert 5 < plain.sum() < 35
    assert np.all(aug.factors[plain] == (1.0, 1.0, 1.0, 0.0)) and np.all(aug.codes[plain] == 0)
    assert torch.equal(out[torch.from_numpy(plain)], bag[torch.from_numpy(plain)].float() / 255)


def test_hed_arguments_are_validated_and_pass_through_bag_transform():
    for bad in (dict(hed_sigma=-0.1), dict(hed_sigma=1.5), dict(hed_bias=2.0), dict(hed_bias=float("nan"))):
        with pytest.raises(ValueError, match="RandBagAugment: hed_"):
            RandBagAugment(**bad)
    tf = bag_transform(True, MEAN, STD, hed_sigma=0.05, hed_bias=0.02)
    assert tf.transforms[0].hed_sigma == 0.05 and tf.transforms[0].hed_bias == 0.02
    assert torch.isfinite(tf(random_bag(3, 8))).all()


# ------------------------------------------------------------------------------------------ focus blur
def test_gaussian_blur_matches_scipy_per_patch():
    from scipy.ndimage import gaussian_filter

    bag = random_bag(4, 16, seed=3).float() / 255
    sigmas = np.array([0.0, 0.3, 0.8, 1.5])
    out = gaussian_blur(bag, sigmas)
    assert torch.equal(out[0], bag[0])  # σ = 0 keeps the patch exactly
    radius = math.ceil(3 * sigmas.max())
    for i in (1, 2, 3):  # torch's "reflect" padding is scipy's "mirror"
        ref = gaussian_filter(bag[i].double().numpy(), (0, sigmas[i], sigmas[i]), mode="mirror",
                              truncate=radius / sigmas[i])
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-5)
    assert float(out[3].std()) < float(out[2].std()) < float(out[1].std()) < float(bag[1].std()) * 1.01
    assert gaussian_blur(bag, np.zeros(4)) is bag


def test_blur_step_draws_last_and_only_when_asked():
    bag = random_bag(20, 8, seed=5)
    ref, blur = RandBagAugment(hed_sigma=0.1), RandBagAugment(hed_sigma=0.1, blur_sigma=0.8, prob=1.0)
    ref.set_random_state(6)
    blur.set_random_state(6)
    plain, out = ref(bag), blur(bag)
    assert np.array_equal(ref.codes, blur.codes) and np.array_equal(ref.hed_scale, blur.hed_scale)
    assert np.all((blur.sigmas >= 0) & (blur.sigmas <= 0.8)) and len(set(blur.sigmas)) == 20
    assert torch.equal(out, gaussian_blur(plain, blur.sigmas))
    assert not np.any(ref.sigmas)
    with pytest.raises(ValueError, match="RandBagAugment: blur_sigma"):
        RandBagAugment(blur_sigma=3.0)
    tf = bag_transform(True, MEAN, STD, blur_sigma=0.4)
    assert tf.transforms[0].blur_sigma == 0.4
