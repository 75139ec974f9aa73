"""The pseudo-mask job: one palette PNG per patch per layer, resumable, white background, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import Dataset as MonaiDataset
from PIL import Image
from torch.utils.data import Dataset

from monai_wsseg.io.palettes import PALETTES, index_palette
from monai_wsseg.wsss.cam import HookedForward, cams_to_mask, multi_layer_gradcam
from monai_wsseg.wsss.patches import white_background
from monai_wsseg.wsss.pseudo_masks import PseudoMaskJob, mask_path, write_pseudo_masks
from tests.wsss.test_cam import LAYERS, TinyCAMNet

SIZE = 32


def _items(n: int = 5, seed: int = 0) -> list[dict]:
    """Patches with a white glass square (background) in the corner of the odd ones."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        raw = rng.integers(60, 180, size=(SIZE, SIZE, 3), dtype=np.uint8)
        if i % 2:
            raw[:12, :12] = 240  # 144 px of glass: background
            raw[20:24, 20:24] = 250  # 16 px bright speck inside tissue: < 50 px, stays tissue
        label = np.zeros(4, np.float32)
        label[rng.choice(4, size=1 + i % 3, replace=False)] = 1
        image = torch.from_numpy((raw.astype(np.float32) / 255 - 0.5) / 0.25).permute(2, 0, 1)
        name = f"p{i}[{' '.join(str(int(v)) for v in label)}]"
        items.append({"image": image, "label": torch.from_numpy(label), "name": name, "raw": raw})
    return items


class CountingDataset(Dataset):
    """A plain map-style dataset (no ``data`` attribute) that counts loads."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        self.loads = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        self.loads += 1
        return self.items[i]


def _read(path: Path) -> tuple[np.ndarray, list[int]]:
    with Image.open(path) as im:
        assert im.mode == "P"
        return np.array(im), im.getpalette()[:15]


def test_writes_one_palette_png_per_layer_and_patch(tmp_path: Path) -> None:
    items = _items()
    net = TinyCAMNet().eval()
    counts = write_pseudo_masks(net, CountingDataset(items), tmp_path, LAYERS, batch_size=2, background_index=4,
                                palette=PALETTES['luad'], progress=False, precision="fp32")  # exact comparison below
    assert counts == {"images": 5, "written": 5, "skipped": 0, "files": 15}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(LAYERS)
    flat = [v for rgb in PALETTES['luad'] for v in rgb]
    images = torch.stack([it["image"] for it in items])
    labels = torch.stack([it["label"] for it in items])
    cams = multi_layer_gradcam(HookedForward(net, LAYERS), images, labels, LAYERS)
    bg = torch.from_numpy(np.stack([white_background(it["raw"]) for it in items]))
    for layer in LAYERS:
        files = sorted(os.listdir(tmp_path / layer))
        assert files == sorted(it["name"] + ".png" for it in items)  # no temporary files left
        want = cams_to_mask(cams[layer], bg, 4, labels=labels).numpy()
        for i, it in enumerate(items):
            mask, palette = _read(mask_path(tmp_path, layer, it["name"]))
            assert palette == flat
            assert mask.shape == (SIZE, SIZE)
            np.testing.assert_array_equal(mask, want[i])  # same masks as the direct batched computation
            allowed = set(np.flatnonzero(it["label"].numpy()).tolist()) | {4}
            assert set(np.unique(mask).tolist()) <= allowed
            if i % 2:
                assert np.all(mask[:12, :12] == 4)  # glass
                assert np.all(mask[20:24, 20:24] != 4)  # small speck is tissue
            else:
                assert not np.any(mask == 4)


def test_rerun_skips_and_resumes(tmp_path: Path) -> None:
    items = _items()
    net = TinyCAMNet().eval()
    ds = MonaiDataset(items)  # exposes .data with names: finished patches are not even loaded
    write_pseudo_masks(net, ds, tmp_path, LAYERS, batch_size=3, background_index=4, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    assert write_pseudo_masks(net, ds, tmp_path, LAYERS, batch_size=3, background_index=4, progress=False) == {
        "images": 5, "written": 0, "skipped": 5, "files": 0}
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")} == stamp

    # a patch that lost one layer's mask is redone (all its layers); a dataset without names is loaded
    # fully but still skips what is done
    mask_path(tmp_path, "b5_2", items[3]["name"]).unlink()
    counting = CountingDataset(items)
    counts = write_pseudo_masks(net, counting, tmp_path, LAYERS, batch_size=2, background_index=4, progress=True)
    assert counts == {"images": 5, "written": 1, "skipped": 4, "files": 3}
    assert counting.loads == 5
    assert mask_path(tmp_path, "b5_2", items[3]["name"]).exists()


def test_background_from_precomputed_mask_and_no_background_class(tmp_path: Path) -> None:
    items = _items(3)
    for it in items:
        bg = np.zeros((SIZE, SIZE), bool)
        bg[-5:, :] = True
        it["background"] = torch.from_numpy(bg)
        del it["raw"]
    net = TinyCAMNet().eval()
    write_pseudo_masks(net, items, tmp_path / "luad", ["bn7"], batch_size=4, background_index=7, progress=False)
    for it in items:
        mask, palette = _read(mask_path(tmp_path / "luad", "bn7", it["name"]))
        assert np.all(mask[-5:] == 7) and not np.any(mask[:-5] == 7)
        assert palette[:15] == [v for rgb in index_palette(4, 7)[:5] for v in rgb]
    # BCSS: white is tissue, no background class — the masks only hold present classes
    write_pseudo_masks(net, items, tmp_path / "bcss", ["bn7"], batch_size=4, background_index=None, progress=False)
    for it in items:
        mask, _ = _read(mask_path(tmp_path / "bcss", "bn7", it["name"]))
        assert set(np.unique(mask).tolist()) <= set(np.flatnonzero(it["label"].numpy()).tolist())


def test_raw_image_layouts(tmp_path: Path) -> None:
    items = _items(2)
    chw = [dict(it, raw=torch.from_numpy(it["raw"]).permute(2, 0, 1).contiguous()) for it in items]
    net = TinyCAMNet().eval()
    write_pseudo_masks(net, items, tmp_path / "hwc", ["bn7"], background_index=4, progress=False)
    write_pseudo_masks(net, chw, tmp_path / "chw", ["bn7"], background_index=4, progress=False)
    for it in items:
        np.testing.assert_array_equal(_read(mask_path(tmp_path / "hwc", "bn7", it["name"]))[0],
                                      _read(mask_path(tmp_path / "chw", "bn7", it["name"]))[0])
    bad = [dict(it, raw=it["raw"].astype(np.float32)) for it in items]
    with pytest.raises(ValueError, match="must be uint8 RGB"):
        write_pseudo_masks(net, bad, tmp_path / "bad", ["bn7"], background_index=4, progress=False)


def test_errors(tmp_path: Path) -> None:
    items = _items(2)
    net = TinyCAMNet().eval()
    with pytest.raises(ValueError, match=r"'b5_3' is not a submodule.*did you mean"):
        write_pseudo_masks(net, items, tmp_path / "a", ["b4_3", "b5_3"], progress=False)
    assert not (tmp_path / "a").exists()  # nothing written or created
    with pytest.raises(ValueError, match="b5_3"):
        PseudoMaskJob(net, items, tmp_path / "a", ["b5_3"])

    # a forward_with_features function: the unknown layer is reported at the first batch, before writing
    hooked = HookedForward(net, ["bn7"])
    with pytest.raises(ValueError, match="'b5_3' is not a submodule"):  # a HookedForward is checked up front
        write_pseudo_masks(hooked, items, tmp_path / "b", ["bn7", "b5_3"], progress=False)

    def fwf(x: torch.Tensor):
        return hooked(x)

    with pytest.raises(ValueError, match="'b5_2' is not among the network's features"):
        write_pseudo_masks(fwf, items, tmp_path / "b", ["bn7", "b5_2"], progress=False)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.png"))

    no_raw = [{k: v for k, v in it.items() if k != "raw"} for it in items]
    with pytest.raises(ValueError, match="needs a 'background' mask or the uint8 'raw'"):
        write_pseudo_masks(net, no_raw, tmp_path / "c", ["bn7"], background_index=4, progress=False)
    with pytest.raises(ValueError, match="palette has 4 colours"):
        write_pseudo_masks(net, items, tmp_path / "d", ["bn7"], background_index=4, palette=PALETTES['luad'][:4],
                           progress=False)
    twins = [dict(items[0]), dict(items[0])]
    with pytest.raises(ValueError, match="two items are named"):
        write_pseudo_masks(net, twins, tmp_path / "e", ["bn7"], progress=False)
    with pytest.raises(ValueError, match="not in layers"):
        write_pseudo_masks(net, items, tmp_path / "g", ["bn7"], layer_dirs={"b4_3": "x"}, progress=False)
    with pytest.raises(ValueError, match="same folder"):
        write_pseudo_masks(net, items, tmp_path / "g", ["bn7", "b4_3"], layer_dirs={"b4_3": "bn7"}, progress=False)
    bad = [dict(items[0], name="../x")]
    with pytest.raises(ValueError, match="plain file name"):
        write_pseudo_masks(net, bad, tmp_path / "f", ["bn7"], progress=False)


def test_job_object_function_protocol_and_training_mode_restored(tmp_path: Path) -> None:
    items = _items(3)
    net = TinyCAMNet().train()
    job = PseudoMaskJob(net, items, tmp_path, ["b4_3", "bn7"], batch_size=8, background_index=4, progress=False)
    assert job.run() == {"images": 3, "written": 3, "skipped": 0, "files": 6}
    assert net.training  # put back in training mode after the job
    # the same masks through a forward_with_features function (the module behind it is put in eval mode)
    net.train()
    out2 = tmp_path / "fn"
    write_pseudo_masks(HookedForward(net, ["b4_3", "bn7"]), items, out2, ["b4_3", "bn7"], batch_size=2,
                       background_index=4, progress=False)
    assert net.training
    for layer in ("b4_3", "bn7"):
        for it in items:
            np.testing.assert_array_equal(_read(mask_path(tmp_path, layer, it["name"]))[0],
                                          _read(mask_path(out2, layer, it["name"]))[0])


def test_runs_from_a_bundle_config(tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    # A bundle's "imports": ["$import monai_wsseg.wsss.pseudo_masks"] does the same as these globals.
    parser = ConfigParser({
        "bundle_root": str(tmp_path),
        "network": {"_target_": "tests.wsss.test_cam.TinyCAMNet", "n_classes": 4},
        "dataset": {"_target_": "monai.data.Dataset",
                    "data": {"_target_": "tests.wsss.test_pseudo_masks._items", "n": 2}},
        "pseudo_masks": {"_target_": "monai_wsseg.wsss.pseudo_masks.PseudoMaskJob",
                         "network_or_fn": "@network", "dataset": "@dataset",
                         "output_dir": "$@bundle_root + '/pseudo_masks'", "layers": ["b4_3", "b5_2", "bn7"],
                         "batch_size": 2, "device": "cpu", "background_index": 4, "progress": False,
                         "palette": "$monai_wsseg.io.palettes.PALETTES['luad']"},
        "run": "$@pseudo_masks.run()",
    }, globals={"monai_wsseg": "monai_wsseg"})
    counts = parser.get_parsed_content("run")
    assert counts == {"images": 2, "written": 2, "skipped": 0, "files": 6}
    assert len(list((tmp_path / "pseudo_masks").rglob("*.png"))) == 6


def test_end_to_end_with_patch_dataset_and_pda_classifier(tmp_path: Path) -> None:
    """Synthetic LUAD-style patch folder → PatchClassificationDataset(with_background) → PDAClassifier's
    ``forward_with_features`` (a bound method: its module is put in eval mode) → masks per layer."""
    patches = pytest.importorskip("monai_wsseg.wsss.patches")
    pda = pytest.importorskip("monai_wsseg.wsss.pda")
    resnet38 = pytest.importorskip("monai_wsseg.wsss.resnet38")
    from monai_wsseg.synthetic.generator import make_patch_set

    root = make_patch_set(tmp_path / "set", n_train=4, n_val=0, n_test=0, size=48, seed=3)
    ds = patches.PatchClassificationDataset(root, num_classes=4, with_background=True)
    torch.manual_seed(0)
    net = pda.PDAClassifier(resnet38.ResNet38d(width=0.0625), num_classes=4).train()
    out = tmp_path / "pm"
    # the reference's "bn7" masks come from ReLU(bn7), ResNet38d's "final": written to the "bn7" folder
    layers = ["b4_3", "b5_2", "final"]
    counts = write_pseudo_masks(net.forward_with_features, ds, out, layers, batch_size=4, background_index=4,
                                palette=PALETTES["luad"], layer_dirs={"final": "bn7"}, progress=False)
    assert counts == {"images": 4, "written": 4, "skipped": 0, "files": 12}
    assert sorted(p.name for p in out.iterdir()) == ["b4_3", "b5_2", "bn7"]
    assert net.training  # restored
    for i in range(len(ds)):
        item = ds[i]
        for layer in LAYERS:
            mask = patches.read_index_mask(mask_path(out, layer, item["name"]))
            assert mask.shape == (48, 48)
            allowed = set(np.flatnonzero(item["label"].numpy()).tolist()) | {4}
            assert set(np.unique(mask).tolist()) <= allowed
            np.testing.assert_array_equal(mask == 4, item["background"].numpy())
    # finished names are skipped from the dataset's .data, without loading a patch
    assert write_pseudo_masks(net.forward_with_features, ds, out, layers, layer_dirs={"final": "bn7"},
                              progress=False)["skipped"] == 4


def test_bf16_masks_agree_with_fp32(tmp_path: Path) -> None:
    items = _items()
    net = TinyCAMNet().eval()
    for precision in ("fp32", "bf16"):
        write_pseudo_masks(net, CountingDataset(items), tmp_path / precision, LAYERS, batch_size=2,
                           background_index=4, palette=PALETTES['luad'], progress=False, precision=precision)
    for layer in LAYERS:
        for it in items:
            a, _ = _read(mask_path(tmp_path / "fp32", layer, it["name"]))
            b, _ = _read(mask_path(tmp_path / "bf16", layer, it["name"]))
            assert (a == b).mean() > 0.98, (layer, it["name"])
