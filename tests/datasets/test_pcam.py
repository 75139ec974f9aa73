"""PCam: HDF5 reading (lazily, per process), paper A's ×2 + zero-pad preprocessing, exact patch AUC, the CLI."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from monai_wsseg.datasets.pcam import PCamDataset, evaluate_pcam, pcam_preprocess
from monai_wsseg.networks.fcn import ResNetFCN
from tests.conftest import PROJECT_ROOT, load_script

N = 40


def write_pcam(folder, images: np.ndarray, labels: np.ndarray, name: str = "test") -> tuple:
    """Files in the official layout: x (N, 96, 96, 3) uint8, y (N, 1, 1, 1) uint8, gzip, one chunk per patch."""
    x_path = folder / f"camelyonpatch_level_2_split_{name}_x.h5"
    y_path = folder / f"camelyonpatch_level_2_split_{name}_y.h5"
    with h5py.File(x_path, "w") as f:
        f.create_dataset("x", data=images, chunks=(1, *images.shape[1:]), compression="gzip")
    with h5py.File(y_path, "w") as f:
        f.create_dataset("y", data=labels.reshape(-1, 1, 1, 1).astype(np.uint8))
    return x_path, y_path


@pytest.fixture(scope="module")
def pcam(tmp_path_factory):
    """40 patches; tumor (1) patches are darker and bluer than normal ones, so darkness separates them."""
    rng = np.random.default_rng(0)
    labels = (np.arange(N) % 2 == 1) ^ (np.arange(N) % 5 == 0)  # mixed, both classes in any 8 in a row
    base = np.where(labels[:, None], [110, 70, 170], [225, 175, 205])
    images = base[:, None, None, :] + rng.integers(-20, 21, size=(N, 96, 96, 3))
    images = np.clip(images, 0, 255).astype(np.uint8)
    x_path, y_path = write_pcam(tmp_path_factory.mktemp("pcam"), images, labels)
    return x_path, y_path, images, labels.astype(np.uint8)


def pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC by definition: P(score of a positive > score of a negative), ties ½."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


class Darkness(nn.Module):
    """Dense logits (B, 1, H, W) = −intensity: darker patches score higher."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x.mean(dim=1, keepdim=True)


# ---------------------------------------------------------------- dataset


def test_items_shapes_dtypes_labels(pcam):
    x_path, y_path, images, labels = pcam
    ds = PCamDataset(x_path, y_path)
    assert len(ds) == N
    item = ds[3]
    assert item["image"].shape == (3, 96, 96) and item["image"].dtype == torch.uint8
    assert torch.equal(item["image"], torch.from_numpy(images[3]).permute(2, 0, 1))
    assert item["label"].shape == () and item["label"].dtype == torch.float32
    assert [ds[i]["label"].item() for i in range(N)] == labels.astype(float).tolist()
    assert "label" not in PCamDataset(x_path)[0]


def test_indices_and_transform(pcam):
    x_path, y_path, images, labels = pcam
    ds = PCamDataset(x_path, y_path, indices=[7, 2], transform=lambda t: t.float() / 255)
    assert len(ds) == 2
    assert ds[0]["label"].item() == labels[7]
    assert torch.allclose(ds[1]["image"], torch.from_numpy(images[2]).permute(2, 0, 1).float() / 255)
    with pytest.raises(ValueError, match="outside"):
        PCamDataset(x_path, y_path, indices=[N])


def test_opens_lazily_per_process_and_pickles(pcam):
    x_path, y_path, images, _ = pcam
    ds = PCamDataset(x_path, y_path)
    assert ds._h5 is None  # construction validated and closed its handle
    ds[0]
    first = ds._h5
    assert first is not None and ds._pid == os.getpid()
    ds._pid = -1  # as if this were a forked child: the inherited handle must not be reused
    ds[1]
    assert ds._h5 is not first and ds._pid == os.getpid()
    clone = pickle.loads(pickle.dumps(ds))  # an open h5py handle would not pickle
    assert clone._h5 is None and torch.equal(clone[5]["image"], ds[5]["image"])
    ds.close()
    assert ds._h5 is None and torch.equal(ds[5]["image"], torch.from_numpy(images[5]).permute(2, 0, 1))


def test_dataloader_workers_read_everything_in_order(pcam):
    x_path, y_path, images, labels = pcam
    ds = PCamDataset(x_path, y_path)
    ds[0]  # the parent holds an open handle when the workers fork
    batches = list(DataLoader(ds, batch_size=6, num_workers=2))
    got = torch.cat([b["image"] for b in batches])
    assert torch.equal(got, torch.from_numpy(images).permute(0, 3, 1, 2))
    assert torch.cat([b["label"] for b in batches]).tolist() == labels.astype(float).tolist()


# ---------------------------------------------------------------- errors name the file


def test_missing_file(tmp_path, pcam):
    with pytest.raises(FileNotFoundError, match=re.escape("nope_x.h5")):
        PCamDataset(tmp_path / "nope_x.h5")
    with pytest.raises(FileNotFoundError, match=re.escape("nope_y.h5")):
        PCamDataset(pcam[0], tmp_path / "nope_y.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake_x.h5"
    path.write_text("not hdf5\n")
    with pytest.raises(ValueError, match=r"fake_x\.h5.*not an HDF5"):
        PCamDataset(path)


def test_wrong_key(tmp_path, pcam):
    path = tmp_path / "keys_x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match=r"keys_x\.h5.*no dataset 'x'.*images"):
        PCamDataset(path)
    with pytest.raises(ValueError, match=r"keys_x\.h5.*no dataset 'y'"):
        PCamDataset(pcam[0], path)  # x and y files swapped


def test_wrong_shape_dtype_and_values(tmp_path, pcam):
    path = tmp_path / "gray_x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros((2, 96, 96), np.uint8))
    with pytest.raises(ValueError, match=r"gray_x\.h5.*\(N, H, W, 3\) uint8"):
        PCamDataset(path)
    images = np.zeros((4, 96, 96, 3), np.uint8)
    x_path, y_path = write_pcam(tmp_path, images, np.array([0, 1, 2, 1]), name="bad")
    with pytest.raises(ValueError, match=r"bad_y\.h5.*0 or 1"):
        PCamDataset(x_path, y_path)


def test_n_mismatch_names_both_files(tmp_path, pcam):
    x_path, _, _, _ = pcam
    y_path = tmp_path / "short_y.h5"
    with h5py.File(y_path, "w") as f:
        f.create_dataset("y", data=np.zeros((N - 1, 1, 1, 1), np.uint8))
    with pytest.raises(ValueError, match=rf"short_y\.h5.*{N - 1}, 1, 1, 1.*{N} patches of .*{x_path.name}"):
        PCamDataset(x_path, y_path)


# ---------------------------------------------------------------- preprocessing geometry


def test_upsampling_is_bilinear_x2_centred_in_224():
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8, generator=rng)
    out = pcam_preprocess(images)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    expected = F.interpolate(images.float() / 255, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, :, 16:208, 16:208], expected)
    frame = torch.ones(224, 224, dtype=torch.bool)
    frame[16:208, 16:208] = False
    assert (out[:, :, frame] == 0).all()  # without mean/std: [0, 1] RGB padded black
    # float [0, 1] input is the same image
    torch.testing.assert_close(pcam_preprocess(images.float() / 255), out)


def test_known_pattern_lands_where_expected():
    images = torch.zeros(1, 3, 96, 96, dtype=torch.uint8)
    images[:, :, 10:30, 40:60] = 255  # input rows 10..29, cols 40..59
    out = pcam_preprocess(images)[0, 0]
    # ×2 maps input pixel i to output 2i, 2i + 1; the frame adds 16. Bilinear blurs one output pixel per edge.
    assert (out[16 + 20 + 1 : 16 + 60 - 1, 16 + 80 + 1 : 16 + 120 - 1] == 1).all()
    inside = torch.zeros_like(out, dtype=torch.bool)
    inside[16 + 20 - 1 : 16 + 60 + 1, 16 + 80 - 1 : 16 + 120 + 1] = True
    assert (out[~inside] == 0).all()
    # the pattern's centroid (input centre row 20, col 50, in pixel units) moves to 16 + 2 × centre
    rows, cols = torch.meshgrid(torch.arange(224) + 0.5, torch.arange(224) + 0.5, indexing="ij")
    assert ((out * rows).sum() / out.sum()).item() == pytest.approx(16 + 2 * 20)
    assert ((out * cols).sum() / out.sum()).item() == pytest.approx(16 + 2 * 50)


def test_padding_is_zero_after_normalisation_i_e_the_mean_colour():
    mean, std = (0.7, 0.5, 0.6), (0.2, 0.25, 0.1)
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    out = pcam_preprocess(images, mean=mean, std=std)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    raw = pcam_preprocess(images)
    torch.testing.assert_close(out[:, :, 16:208, 16:208], (raw[:, :, 16:208, 16:208] - m) / s)
    assert (out[:, :, :16] == 0).all() and (out[:, :, 208:] == 0).all()
    assert (out[:, :, :, :16] == 0).all() and (out[:, :, :, 208:] == 0).all()
    # de-normalised, the frame is the mean colour (not black)
    torch.testing.assert_close((out * s + m)[:, :, 0, 0], torch.tensor([mean, mean]))


def test_odd_margin_and_errors():
    out = pcam_preprocess(torch.full((1, 3, 96, 96), 255, dtype=torch.uint8), size=225)
    assert out.shape[-2:] == (225, 225)
    assert out[0, 0, 16, 16] == 1 and out[0, 0, 15, 15] == 0 and out[0, 0, 207, 207] == 1
    assert out[0, 0, 208, 208] == 0  # the extra pixel of the odd margin is at the bottom / right
    with pytest.raises(ValueError, match="larger than size"):
        pcam_preprocess(torch.zeros(1, 3, 96, 96), size=160)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pcam_preprocess(torch.full((1, 3, 96, 96), 200.0))
    with pytest.raises(ValueError, match="both mean and std"):
        pcam_preprocess(torch.zeros(1, 3, 96, 96), mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        pcam_preprocess(torch.zeros(3, 96, 96))


# ---------------------------------------------------------------- evaluation


def test_separable_data_gives_auc_one(pcam):
    x_path, y_path, _, labels = pcam
    res = evaluate_pcam(Darkness(), PCamDataset(x_path, y_path), batch_size=16, progress=False)
    assert res["auc"] == 1.0
    assert res["n"] == N and res["positives"] == int(labels.sum())
    assert res["probabilities"].shape == (N,)
    assert res["probabilities"][labels == 1].min() > res["probabilities"][labels == 0].max()


def test_auc_is_the_rank_auc_of_the_returned_probabilities(pcam):
    x_path, y_path, _, labels = pcam
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.ReLU(), nn.Conv2d(4, 1, 3))
    res = evaluate_pcam(net, PCamDataset(x_path, y_path), batch_size=7, progress=False)
    assert res["auc"] == pytest.approx(pairwise_auc(res["probabilities"], labels), abs=1e-12)
    # the probabilities are the sigmoid of the spatial mean of the dense logits, in dataset order
    x = pcam_preprocess(PCamDataset(x_path)[4]["image"][None], mean=(0.5,) * 3, std=(0.5,) * 3)
    with torch.no_grad():
        expected = torch.sigmoid(net(x).mean()).item()
    assert res["probabilities"][4] == pytest.approx(expected, rel=1e-5)


class TiedScores(nn.Module):
    """A (B,) output with heavy ties: the patch's mean intensity rounded to a few levels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.round(x.mean(dim=(1, 2, 3)) * 4)


def test_ties_count_half_and_flat_outputs_are_accepted(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 30)
    grey = np.where(labels == 1, rng.integers(60, 200, 30), rng.integers(100, 256, 30))
    images = np.broadcast_to(grey[:, None, None, None], (30, 96, 96, 3)).astype(np.uint8)
    ds = PCamDataset(*write_pcam(tmp_path, images, labels))
    res = evaluate_pcam(TiedScores(), ds, progress=False)
    assert len(np.unique(res["probabilities"])) < 10  # ties really happen
    assert res["auc"] == pytest.approx(pairwise_auc(res["probabilities"], labels), abs=1e-12)
    assert 0.5 < res["auc"] < 1


def test_patch_logits_method_is_preferred_and_multi_channel_refused(pcam):
    x_path, y_path, _, _ = pcam
    ds = PCamDataset(x_path, y_path, indices=range(8))

    class WithPatchLogits(Darkness):
        def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
            return -super().forward(x).mean(dim=(2, 3))  # reversed: proves this method is the one used

    assert evaluate_pcam(WithPatchLogits(), ds, progress=False)["auc"] == 0.0
    with pytest.raises(ValueError, match="single-channel"):
        evaluate_pcam(nn.Conv2d(3, 2, 1), ds, progress=False)
    with pytest.raises(ValueError, match="labelled"):
        evaluate_pcam(Darkness(), PCamDataset(x_path), progress=False)


def test_single_class_gives_nan(tmp_path):
    images = np.zeros((3, 96, 96, 3), np.uint8)
    ds = PCamDataset(*write_pcam(tmp_path, images, np.zeros(3, int)))
    assert np.isnan(evaluate_pcam(Darkness(), ds, progress=False)["auc"])


# ---------------------------------------------------------------- the CLI


def test_script_end_to_end(tmp_path, pcam):
    x_path, y_path, _, labels = pcam
    torch.manual_seed(0)
    net = ResNetFCN("resnet18", num_classes=1)
    ckpt = tmp_path / "model.pt"
    # a DDP-wrapped training checkpoint: {"model": {"module.<key>": tensor}}
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, ckpt)
    out = tmp_path / "res" / "pcam.json"
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "pcam_auc.py"), "--x", str(x_path), "--y", str(y_path),
         "--ckpt", str(ckpt), "--backbone", "resnet18", "--limit", "6", "--batch-size", "3", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,  # cwd outside the checkout: sys.path insert
    )
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out.read_text())
    assert saved["n"] == 6 and saved["positives"] == int(labels[:6].sum())
    assert 0 <= saved["auc"] <= 1
    assert f"PCam patch AUC {saved['auc']:.4f}" in proc.stdout
    assert [p.name for p in out.parent.iterdir()] == ["pcam.json"]  # no temporary file left behind
    # the same weights evaluated in process give the same AUC
    res = evaluate_pcam(net, PCamDataset(x_path, y_path, indices=range(6)), progress=False)
    assert res["auc"] == pytest.approx(saved["auc"])


def test_script_loads_raw_state_dict_and_reports_bad_checkpoints(tmp_path, pcam):
    module = load_script("pcam_auc")
    net = nn.Sequential(nn.Conv2d(3, 1, 1))
    raw = tmp_path / "raw.pt"
    torch.save({"0.weight": torch.ones(1, 3, 1, 1), "0.bias": torch.zeros(1)}, raw)
    module.load_weights(net, raw)
    assert (net[0].weight == 1).all()
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"0.weight": torch.ones(2, 3, 1, 1)}}, wrong)
    with pytest.raises(ValueError, match=r"wrong\.pt.*do not fit"):
        module.load_weights(net, wrong)
    with pytest.raises(SystemExit, match=re.escape("nope_x.h5")):
        module.main(["--x", str(tmp_path / "nope_x.h5"), "--y", str(pcam[1]), "--ckpt", str(raw)])
