"""RandFlipRot90d: one draw moves an image and its masks together; all 8 symmetries; numpy stays numpy."""

from __future__ import annotations

import numpy as np
import torch

from monai_wsseg.wsss.transforms import RandFlipRot90d


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
