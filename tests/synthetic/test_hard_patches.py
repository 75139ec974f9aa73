"""The hard patch sets (monai_wsseg.synthetic.hard_patches): layout, labels, the second lab, necrosis stained
like tumor-associated stroma, determinism, the colour baseline, and the demo patch set left as it was."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_wsseg.synthetic import HARD_PATCH_PARAMS, colour_baseline, make_hard_patch_sets
from monai_wsseg.synthetic.generator import make_patch_set, parse_patch_label, render_texture
from tests.conftest import load_script

TINY = {"n_train": 8, "n_val": 4, "n_test": 4, "size": 64}


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        with Image.open(p) as im:  # pixels, not file bytes: PNG encoders differ between Pillow builds
            h.update(np.asarray(im).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return make_hard_patch_sets(tmp_path_factory.mktemp("hard_patches"), **TINY)


def test_layout_and_labels_match_masks(sets):
    home, lab2 = sets["home"], sets["lab2"]
    assert len(list((home / "training").glob("*.png"))) == 8
    for split in ("val", "test"):
        images = sorted(p.name for p in (home / split / "img").glob("*.png"))
        assert len(images) == 4 and images == sorted(p.name for p in (home / split / "mask").glob("*.png"))
    assert len(list((lab2 / "test" / "img").glob("*.png"))) == 4
    assert not list((lab2 / "training").glob("*.png")) and not list((lab2 / "val" / "img").glob("*.png"))
    for root in (home, lab2):
        for mask_path in (root / "test" / "mask").glob("*.png"):
            with Image.open(mask_path) as im:
                mask = np.asarray(im)
            present = [int(c in np.unique(mask)) for c in range(4)]
            assert parse_patch_label(mask_path.name) == present
            with Image.open(root / "test" / "img" / mask_path.name) as im:
                assert im.size == (64, 64) and im.mode == "RGB"


def test_the_second_lab_differs_in_colour(sets):
    def mean_colour(root: Path) -> np.ndarray:
        images = [np.asarray(Image.open(p)) for p in (root / "test" / "img").glob("*.png")]
        return np.mean([im.reshape(-1, 3).mean(0) for im in images], axis=0)

    assert np.abs(mean_colour(sets["lab2"]) - mean_colour(sets["home"])).max() > 5


def test_necrosis_has_the_mean_colour_of_tumor_stroma():
    plain = dataclasses.replace(HARD_PATCH_PARAMS, stain_jitter=0.0, colour_cast=0.0)

    def mean_rgb(kind: str) -> np.ndarray:
        return np.mean([render_texture(kind, 128, seed=s, mpp=1.0, params=plain).reshape(-1, 3).mean(0)
                        for s in range(6)], axis=0)

    nec, tas, tumor = mean_rgb("necrosis"), mean_rgb("tumor_stroma"), mean_rgb("tumor")
    assert np.abs(nec - tas).max() < 3 < np.abs(nec - tumor).max()


def test_reruns_keep_files_and_seeds_decide(sets, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in sets["home"].rglob("*.png")}
    make_hard_patch_sets(sets["home"].parent, **TINY)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    again = make_hard_patch_sets(tmp_path, **TINY)
    assert digest(again["home"]) == digest(sets["home"]) and digest(again["lab2"]) == digest(sets["lab2"])
    other = make_hard_patch_sets(tmp_path / "other", **TINY, seed=1)
    assert digest(other["home"]) != digest(sets["home"])


def test_the_demo_patch_set_renders_as_before(tmp_path):
    # the digest of make_patch_set's pixels (3/2/2 patches of 64 px, default params) before the hard patch sets
    make_patch_set(tmp_path, n_train=3, n_val=2, n_test=2, size=64, seed=0)
    assert digest(tmp_path) == "224c11c04bd718733767e1e09826528b45ae46a0d5ade394aea33614e10a897f"


def test_colour_baseline_scores_per_class(sets):
    result = colour_baseline(sets["home"], window=3)
    assert set(result["iou"]) == {"TE", "NEC", "LYM", "TAS"} and result["window"] == 3
    assert 0 <= result["miou"] <= 1 and 0 <= result["acc"] <= 1
    with pytest.raises(FileNotFoundError, match=re.escape("no .png patches")):
        colour_baseline(sets["lab2"], fit_split="val")


def test_make_demo_data_writes_the_hard_patch_sets(tmp_path, monkeypatch):
    script = load_script("make_demo_data")
    monkeypatch.setattr(script, "make_hard_cohorts", lambda out, seed: {})  # slides: tests/synthetic/test_hard.py
    monkeypatch.setattr(script, "make_hard_patch_sets", functools.partial(make_hard_patch_sets, **TINY))
    assert script.main(["--out", str(tmp_path), "--size", "256", "--n-tumor", "1", "--n-normal", "1",
                        "--patches", "0", "--hard"]) == 0
    assert len(list((tmp_path / "hard" / "patches" / "home" / "training").glob("*.png"))) == 8
    assert len(list((tmp_path / "hard" / "patches" / "lab2" / "test" / "mask").glob("*.png"))) == 4
