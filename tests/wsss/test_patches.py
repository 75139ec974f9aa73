"""WSSS patch datasets: file-name labels, palette masks, pseudo masks, paired augmentation (BCSS cutting:
tests/wsss/test_bcss.py)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from monai_wsseg.io.palettes import PALETTES, write_palette_mask
from monai_wsseg.synthetic.generator import make_patch_set
from monai_wsseg.wsss.patches import (
    PatchClassificationDataset,
    PatchSegmentationDataset,
    PseudoMaskDataset,
    parse_label,
    read_index_mask,
    white_background,
)
from monai_wsseg.wsss.transforms import RandFlipRot90d

C = 4  # LUAD-HistoSeg classes: TE NEC LYM TAS; background index 4


@pytest.fixture(scope="module")
def patch_root(tmp_path_factory):
    return make_patch_set(tmp_path_factory.mktemp("luad"), n_train=8, n_val=4, n_test=4, size=64, seed=0)


@pytest.fixture()
def root_copy(patch_root, tmp_path):
    """A private copy for tests that damage the folder."""
    return shutil.copytree(patch_root, tmp_path / "copy")


# ------------------------------------------------------------------------------------------ labels
def test_parse_label_both_spellings():
    assert parse_label("a/b/1031280-2300-27920-[1 0 0 1].png", 4).tolist() == [1, 0, 0, 1]
    assert parse_label("TCGA-A1_100_200[0110].png", 4).tolist() == [0, 1, 1, 0]
    lab = parse_label("x[1 1 0].png", 3)
    assert lab.dtype == np.uint8 and lab.shape == (3,)
    assert parse_label("x[0].png", 1).tolist() == [0]


@pytest.mark.parametrize("name, match", [
    ("plain.png", r"plain\.png: no \[..\] label"),
    ("bad[1 2 0 0].png", r"bad\[1 2 0 0\]\.png: label must be 0/1"),
    ("bad[10 10].png", "label must be 0/1"),
    ("bad[1 01 0].png", "label must be 0/1"),
    ("bad[].png", "label must be 0/1"),
    ("short[101].png", r"short\[101\]\.png: label \[101\] has 3 classes, expected 4"),
    ("long[1 0 1 0 1].png", "has 5 classes, expected 4"),
])
def test_parse_label_errors_name_the_file(name, match):
    with pytest.raises(ValueError, match=match):
        parse_label(name, 4)


# ---------------------------------------------------------------------------------------- datasets
def test_classification_dataset_items(patch_root):
    ds = PatchClassificationDataset(patch_root, C, class_names=("TE", "NEC", "LYM", "TAS"))
    assert len(ds) == 8 and ds.class_names == ["TE", "NEC", "LYM", "TAS"]
    item = ds[3]
    assert set(item) == {"image", "label", "name"}
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["label"].dtype == torch.float32 and item["label"].tolist() == parse_label(item["name"], C).tolist()
    raw = np.array(Image.open(patch_root / "training" / item["name"]).convert("RGB"))
    assert torch.equal((item["image"] * 255).round().to(torch.uint8), torch.from_numpy(raw).permute(2, 0, 1))
    assert [d["name"] for d in ds.data] == [ds[i]["name"] for i in range(len(ds))]  # names without loading
    bg = PatchClassificationDataset(patch_root, C, with_background=True)[3]["background"]
    assert bg.dtype == torch.bool and torch.equal(bg, torch.from_numpy(white_background(raw)))
    # transform gets the dict
    ds_t = PatchClassificationDataset(patch_root, C, transform=lambda d: {**d, "image": d["image"] * 0})
    assert float(ds_t[0]["image"].abs().sum()) == 0


def test_classification_dataset_errors(patch_root, root_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train: training patch folder does not exist.*'training'"):
        PatchClassificationDataset(patch_root, C, split="train")
    (tmp_path / "empty" / "training").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=re.escape("holds no .png")):
        PatchClassificationDataset(tmp_path / "empty", C)
    with pytest.raises(ValueError, match="class_names"):
        PatchClassificationDataset(patch_root, C, class_names=("TE", "NEC"))
    with pytest.raises(ValueError, match=r"expected 5"):
        PatchClassificationDataset(patch_root, 5)
    Image.new("RGB", (64, 64)).save(root_copy / "training" / "unlabelled.png")
    with pytest.raises(ValueError, match=r"unlabelled\.png: no \[..\] label"):
        PatchClassificationDataset(root_copy, C)


def test_segmentation_dataset_items(patch_root):
    for split in ("val", "test"):
        ds = PatchSegmentationDataset(patch_root, split, C, background_index=C)
        assert len(ds) == 4 and ds.ignore_index == C
        seen = set()
        for i in range(len(ds)):
            item = ds[i]
            assert set(item) == {"image", "mask", "label", "name"}
            assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
            assert item["mask"].dtype == torch.int64
            assert item["label"].tolist() == parse_label(item["name"], C).tolist()  # mask and name agree
            seen |= set(item["mask"].unique().tolist())
        assert seen <= set(range(C + 1))
    # background kept as given: the demo set has some white glass (index 4) somewhere
    all_vals = set()
    for split in ("val", "test"):
        ds = PatchSegmentationDataset(patch_root, split, C, background_index=C)
        for i in range(len(ds)):
            all_vals |= set(ds[i]["mask"].unique().tolist())
    assert all_vals <= set(range(C + 1)) and len(all_vals & set(range(C))) >= 2


def test_unknown_palette_index_names_the_file(root_copy):
    mask_dir = root_copy / "val" / "mask"
    victim = sorted(mask_dir.iterdir())[1]
    m = read_index_mask(victim).copy()
    m[:3, :3] = 7
    write_palette_mask(victim, m, PALETTES["luad"] + [(9, 9, 9)] * 3)
    ds = PatchSegmentationDataset(root_copy, "val", C, background_index=C)
    ds[0]
    with pytest.raises(ValueError, match=re.escape(victim.name) + r".*unknown index \[7\]"):
        ds[1]
    # index 5 is unknown to LUAD (background 4) but is the declared background of another convention
    m[:3, :3] = 5
    write_palette_mask(victim, m, PALETTES["luad"] + [(9, 9, 9)])
    with pytest.raises(ValueError, match=r"unknown index \[5\]"):
        ds[1]
    assert PatchSegmentationDataset(root_copy, "val", C, background_index=5).ignore_index == 5
    with pytest.raises(ValueError, match="background_index"):
        PatchSegmentationDataset(root_copy, "val", C, background_index=2)


def test_segmentation_dataset_pairing_errors(root_copy):
    victim = sorted((root_copy / "test" / "mask").iterdir())[0]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) without a mask.*" + re.escape(victim.name)):
        PatchSegmentationDataset(root_copy, "test", C, background_index=C)
    with pytest.raises(FileNotFoundError, match="split folder does not exist"):
        PatchSegmentationDataset(root_copy, "validation", C)
    # a mask of the wrong size names the mask file
    val_mask = sorted((root_copy / "val" / "mask").iterdir())[0]
    write_palette_mask(val_mask, np.zeros((32, 64), np.uint8), PALETTES["luad"])
    with pytest.raises(ValueError, match=re.escape(val_mask.name) + r": mask is 64x32 px"):
        PatchSegmentationDataset(root_copy, "val", C, background_index=C)[0]


def _write_pseudo(root, folders):
    for k, folder in enumerate(folders):
        for p in sorted((root / "training").iterdir()):
            m = (np.arange(64)[None, :] // 16 + k) % (C + 1) * np.ones((64, 1), np.int64)
            write_palette_mask(root / folder / p.name, m, PALETTES["luad"])


def test_pseudo_mask_dataset(root_copy):
    folders = ["pseudo/b4_3", "pseudo/b5_2", "pseudo/bn7"]
    _write_pseudo(root_copy, folders)
    ds = PseudoMaskDataset(root_copy, folders, C, background_index=C)
    item = ds[2]
    assert set(item) == {"image", "label", "pseudo", "name"}
    assert item["pseudo"].shape == (3, 64, 64) and item["pseudo"].dtype == torch.int64
    for k in range(3):  # layer order kept
        assert item["pseudo"][k, 0, :].tolist() == [((x // 16) + k) % (C + 1) for x in range(64)]
    assert item["label"].tolist() == parse_label(item["name"], C).tolist()
    # absolute folder paths work too
    assert len(PseudoMaskDataset(root_copy, [root_copy / f for f in folders], C)) == 8


def test_pseudo_mask_missing_folder_and_file(root_copy):
    _write_pseudo(root_copy, ["pm/bn7", "pm/b5_2"])
    with pytest.raises(FileNotFoundError, match=r"do not exist: \[.*pm/b4_3'\]"):
        PseudoMaskDataset(root_copy, ["pm/b4_3", "pm/b5_2", "pm/bn7"], C)
    victim = sorted((root_copy / "pm" / "b5_2").iterdir())[4]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r"pm/b5_2: 1 of 8 pseudo masks missing.*" + re.escape(victim.name)):
        PseudoMaskDataset(root_copy, ["pm/b5_2", "pm/bn7"], C)
    with pytest.raises(ValueError, match="non-empty list"):
        PseudoMaskDataset(root_copy, "pm/bn7", C)


def test_white_background():
    img = np.full((60, 60, 3), 120, np.uint8)
    img[:, 40:] = 245  # a large white region
    img[10:14, 10:14] = 250  # a 16 px speck: removed
    img[30:40, 10:20] = (255, 255, 120)  # bright but yellowish: grey 233 > 200, 100 px: kept
    bg = white_background(img)
    assert bg.dtype == bool and bg.shape == (60, 60)
    assert bg[:, 40:].all() and not bg[10:14, 10:14].any() and bg[30:40, 10:20].all()
    assert bg[:, :40].sum() == 100
    assert white_background(img, min_size_px=0)[10:14, 10:14].all()
    assert not white_background(img, threshold=250).any()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        white_background(img.astype(np.float32))


# ------------------------------------------------------------------------------------ augmentation
def test_pseudo_dataset_with_augmentation_in_a_loader(root_copy):
    from monai.data import DataLoader

    _write_pseudo(root_copy, ["pm/a", "pm/b"])
    ds = PseudoMaskDataset(root_copy, ["pm/a", "pm/b"], C, transform=RandFlipRot90d(seed=0))
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["pseudo"].shape == (4, 2, 64, 64)
    assert batch["label"].shape == (4, C) and len(batch["name"]) == 4


def _augmented(ds, workers, epoch):
    from monai.data import DataLoader

    ds.set_epoch(epoch)
    return torch.cat([b["image"] for b in DataLoader(ds, batch_size=3, num_workers=workers)])


def test_seeded_augmentation_is_per_item_not_per_worker(patch_root):
    def dataset(seed):
        return PatchClassificationDataset(patch_root, C, transform=RandFlipRot90d(keys="image"), seed=seed)

    one, two = _augmented(dataset(5), 0, 1), _augmented(dataset(5), 2, 1)
    assert torch.equal(one, two)  # worker count changes nothing
    assert not torch.equal(one, _augmented(dataset(5), 0, 2))  # each epoch its own draw
    assert not torch.equal(one, _augmented(dataset(6), 0, 1))  # each seed its own
    assert torch.equal(dataset(5)[3]["image"], dataset(5)[3]["image"])
    # without a seed the transform keeps its own (per-worker) stream: 1 and 2 workers differ here
    assert not torch.equal(_augmented(dataset(None), 0, 1), _augmented(dataset(None), 2, 1))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        dataset(-1)
