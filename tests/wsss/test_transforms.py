"""RandFlipRot90d: one draw moves an image and its masks together; all 8 symmetries; numpy stays numpy."""

from __future__ import annotations

import numpy as np
import torch

from monai_wsseg.wsss.transforms import RandFlipRot90d, RandHEDJitterd


def test_paired_flip_rot90_keeps_alignment():
    rng = np.random.default_rng(1)
    mask = torch.from_numpy(rng.integers(0, 5, (16, 16)))
    image = torch.stack([mask.float() / 10, mask.float().T, torch.zeros(16, 16)])  # channel 0 encodes the mask
    pseudo = torch.stack([mask, (mask + 1) % 5])
    t = RandFlipRot90d(seed=3)
    draws = set()
    for _ in range(64):
        out = t({"image": image, "mask": mask, "pseudo": pseudo, "name": "x"})
        draws.add(t.last)
        assert torch.equal((out["image"][0] * 10).round().long(), out["mask"])
        assert torch.equal(out["pseudo"][0], out["mask"]) and torch.equal(out["pseudo"][1], (out["mask"] + 1) % 5)
        assert out["name"] == "x"
    # all 8 symmetries of the square occur (hflip + vflip == rot180, so 16 draws give 8 distinct maps)
    maps = {tuple(RandFlipRot90d(seed=0).apply(mask).flatten().tolist())}
    for k, h, v in draws:
        t._k, t._hflip, t._vflip = k, h, v
        maps.add(tuple(t.apply(mask).flatten().tolist()))
    assert len(maps) == 8
    # numpy in, contiguous numpy out; the same seed gives the same draws
    a, b = RandFlipRot90d(keys="mask", seed=7), RandFlipRot90d(keys="mask", seed=7)
    for _ in range(10):
        ra, rb = a({"mask": mask.numpy()}), b({"mask": mask.numpy()})
        assert np.array_equal(ra["mask"], rb["mask"]) and ra["mask"].flags.c_contiguous
    off = RandFlipRot90d(flip=False, rot90=False, seed=0)
    assert all(torch.equal(off({"mask": mask})["mask"], mask) for _ in range(5))


def test_hed_jitter_changes_the_stain_of_the_image_alone():
    import pytest

    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(0.3, 0.9, (3, 16, 16)).astype(np.float32))
    image[:, 15, 15] = image[:, 0, 0]
    mask = torch.from_numpy(rng.integers(0, 4, (16, 16)))
    item = {"image": image, "pseudo": mask}
    assert torch.equal(RandHEDJitterd()(item)["image"], image)  # paper B: no colour augmentation
    jitter = RandHEDJitterd(sigma=0.2, bias=0.05, seed=3)
    first, second = jitter(item), jitter(item)
    assert torch.equal(first["pseudo"], mask) and first["image"].shape == image.shape
    assert not torch.equal(first["image"], image) and not torch.equal(first["image"], second["image"])
    assert 0.0 <= float(first["image"].min()) and float(first["image"].max()) <= 1.0
    # one colour map per image, not per-pixel noise: equal pixels stay equal
    assert torch.equal(first["image"][:, 0, 0], first["image"][:, 15, 15])
    again = RandHEDJitterd(sigma=0.2, bias=0.05, seed=3)(item)
    assert torch.equal(again["image"], first["image"])
    with pytest.raises(ValueError, match="sigma must be in"):
        RandHEDJitterd(sigma=1.5)
    with pytest.raises(ValueError, match=r"'image' must be a \(3, H, W\) float image"):
        RandHEDJitterd(sigma=0.1)({"image": torch.zeros(3, 4, 4, dtype=torch.uint8)})
