"""compute_stats.py --stain_json: Reinhard and Macenko references from the training bags, written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_wsseg.wsi.stain import MacenkoNormalizer, ReinhardNormalizer, stain_normalizer
from tests.conftest import load_script

ARGS = ["--bags-per-slide", "1", "--bag_size", "6", "--patch_size", "64", "--mpp", "0.5"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from monai_wsseg.synthetic.generator import make_cohort

    root = tmp_path_factory.mktemp("stain_cohort")
    make_cohort(root, n_tumor=1, n_normal=1, size=(512, 512), seed=0, splits=["train", "train"])
    return root


def test_stain_json_holds_both_references(cohort, tmp_path, capsys):
    script = load_script("compute_stats")
    out = tmp_path / "refs" / "stain.json"
    result = script.main(["--dataset_dir", str(cohort), *ARGS, "--stain_json", str(out), "--stain_pixels", "5000"])
    saved = json.loads(out.read_text())
    assert set(saved) == {"reinhard", "macenko", "source"}
    assert [p.name for p in out.parent.iterdir()] == ["stain.json"]  # no temp file left
    src = saved["source"]
    assert 1000 < src["tissue_pixels"] <= 5000 and src["bags"] == 2 and src["split"] == "train"
    assert src["dataset_dir"] == str(cohort.resolve()) and result["stain_json"] == str(out.resolve())
    ReinhardNormalizer(saved["reinhard"])
    stains = np.asarray(MacenkoNormalizer(saved["macenko"]).stains)
    assert stains[0, 0] > stains[1, 0]  # hematoxylin (redder in OD) first
    assert isinstance(stain_normalizer("macenko", out), MacenkoNormalizer)
    assert "stain references" in capsys.readouterr().err
    # The mean/std part is unchanged by the option.
    plain = script.main(["--dataset_dir", str(cohort), *ARGS])
    assert plain["mean"] == result["mean"] and plain["std"] == result["std"] and "stain_json" not in plain
    again = tmp_path / "again.json"
    script.main(["--dataset_dir", str(cohort), *ARGS, "--stain_json", str(again), "--stain_pixels", "5000"])
    assert json.loads(again.read_text()) == saved  # same seed, same pixels, same references


def test_stain_pixels_must_be_sensible(cohort):
    with pytest.raises(SystemExit):
        load_script("compute_stats").main(["--dataset_dir", str(cohort), "--stain_json", "x.json",
                                           "--stain_pixels", "10"])
