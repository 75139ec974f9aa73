"""MIL bags: tissue patches of one slide, fresh each epoch, reproducible, and a bad slide reported."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from monai_wsseg.mil.bags import SlideBagDataset, collate_bags
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import smooth_rgb


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bags")
    paths = []
    for i in range(2):
        image = smooth_rgb(1024, 1536, seed=10 + i)
        image[:, :768] = 246  # left half glass
        path = folder / f"s{i}.tif"
        write_pyramidal_tiff(path, image, 0.5)
        paths.append(path)
    return paths


def test_bag_shapes_labels_and_tissue_only(slides):
    ds = SlideBagDataset([(slides[0], 1), (slides[1], 0)], bag_size=6, patch_size=64, mpp=1.0)
    item = ds[0]
    assert item["image"].shape == (6, 3, 64, 64) and item["image"].dtype == torch.float32
    assert item["label"].item() == 1.0 and ds[1]["label"].item() == 0.0
    # level-0 footprint of a 64 px patch at 1.0 um/px on a 0.5 um/px slide is 128 px: all on the right half
    assert (item["positions"][:, 0] >= 768 - 64).all()
    assert len({tuple(p) for p in item["positions"].tolist()}) == 6  # without replacement


def test_bags_change_with_epoch_and_repeat_with_seed(slides):
    ds = SlideBagDataset([(slides[0], 1)], bag_size=5, patch_size=64, mpp=1.0, seed=3)
    first = ds[0]["positions"]
    ds.set_epoch(1)
    second = ds[0]["positions"]
    assert not torch.equal(first, second)
    again = SlideBagDataset([(slides[0], 1)], bag_size=5, patch_size=64, mpp=1.0, seed=3)
    again.set_epoch(1)
    assert torch.equal(again[0]["positions"], second)


def test_small_slide_draws_with_replacement(slides):
    ds = SlideBagDataset([(slides[0], 1)], bag_size=200, patch_size=64, mpp=1.0)
    positions = ds[0]["positions"].numpy()
    assert positions.shape == (200, 2)
    assert len(np.unique(positions, axis=0)) == len(ds.positions(0))  # every position at least once


def test_unreadable_slide_is_reported_not_raised(slides, tmp_path):
    bad = tmp_path / "gone.tif"
    bad.write_bytes(slides[0].read_bytes())
    ds = SlideBagDataset([(slides[0], 1), (bad, 0)], bag_size=3, patch_size=64, mpp=1.0)
    bad.write_bytes(b"broken now")  # becomes unreadable after the dataset was built
    batch = collate_bags([ds[0], ds[1]])
    assert batch["image"].shape == (1, 3, 3, 64, 64) and batch["slide"] == [str(slides[0])]
    assert batch["errors"][0][0] == str(bad) and "gone.tif" in batch["errors"][0][1]


def test_bad_labels_are_refused(slides):
    with pytest.raises(ValueError, match=re.escape("s0.tif: a MIL bag needs a slide label 0 or 1")):
        SlideBagDataset([(slides[0], 2)])


def test_bags_per_slide_draws_new_bags_of_each_slide(slides):
    ds = SlideBagDataset([(slides[0], 1), (slides[1], 0)], bag_size=4, patch_size=64, mpp=1.0, bags_per_slide=3)
    assert len(ds) == 6 and ds.labels == [1, 0, 1, 0, 1, 0]
    assert ds[2]["slide"] == ds[0]["slide"] == str(slides[0])
    assert not torch.equal(ds[0]["positions"], ds[2]["positions"])
    with pytest.raises(ValueError, match="bags_per_slide"):
        SlideBagDataset([(slides[0], 1)], bags_per_slide=0)


class _Tint:
    """A stain normaliser whose slide transform records how often it was fitted and inverts the patches."""

    def __init__(self):
        self.fits = 0

    def for_slide(self, pixels):
        self.fits += 1
        assert pixels.ndim == 2 and pixels.shape[1] == 3 and len(pixels)
        return lambda batch: 255 - batch


def test_stain_normalizer_is_fitted_once_per_slide_and_maps_patches(slides):
    norm = _Tint()
    plain = SlideBagDataset([(slides[0], 1)], bag_size=4, patch_size=64, mpp=1.0)
    ds = SlideBagDataset([(slides[0], 1)], bag_size=4, patch_size=64, mpp=1.0, stain_normalizer=norm)
    first, again = ds[0], ds[0]
    assert norm.fits == 1
    assert torch.allclose(first["image"], 1 - plain[0]["image"]) and torch.equal(first["image"], again["image"])


def test_first_epoch_prepares_every_slide_for_the_workers(slides, tmp_path):
    from monai.data import DataLoader

    from monai_wsseg.wsi.stain import ReinhardNormalizer, stain_normalizer

    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a slide")
    records = [(slides[0], 1), (slides[1], 0), (bad, 0)]
    reference = ReinhardNormalizer.fit(smooth_rgb(64, 64, seed=1).reshape(-1, 3))

    def dataset():
        return SlideBagDataset(records, bag_size=4, patch_size=64, mpp=1.0, seed=2,
                               stain_normalizer=stain_normalizer("reinhard", reference))

    lazy = dataset()
    lazy.epoch = 1  # set by hand: nothing prepared, each item computes its own slide's grid
    expected = [lazy[j] for j in range(3)]
    ds = dataset()
    ds.set_epoch(1)  # the unreadable slide does not stop the others
    assert sorted(ds._grids) == sorted(ds._stains) == [0, 1] and not ds._slides  # no handle kept open
    batch = next(iter(DataLoader(ds, batch_size=3, num_workers=1, collate_fn=collate_bags)))
    assert torch.equal(batch["image"], torch.stack([expected[0]["image"], expected[1]["image"]]))
    assert batch["errors"][0][0] == str(bad) and expected[2]["error"] == batch["errors"][0][1]
