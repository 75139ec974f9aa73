"""Bad settings: refused when the component is built (before any slide is read), naming the setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_wsseg.inference.cohort import MapOutputs, run_cohort
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.mil.bags import SlideBagDataset
from monai_wsseg.mil.loss import TopKBottomKMILLoss
from monai_wsseg.networks.checkpoint import load_weights
from monai_wsseg.networks.fcn import ResNetFCN
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import smooth_rgb
from tests.faults.conftest import expect_clear, expect_handled
from tests.inference.test_cohort import TinyFCN, inferer


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return write_pyramidal_tiff(tmp_path_factory.mktemp("param") / "s.tif", smooth_rgb(768, 1024, seed=7), 0.5)


@pytest.mark.parametrize(
    ("case", "alpha", "beta", "problem"),
    [
        ("alpha + beta > 1", 0.7, 0.5, "alpha + beta = 1.2 > 1"),
        ("alpha = 0", 0.0, 0.2, "alpha=0.0 must be > 0"),
        ("alpha NaN", float("nan"), 0.2, "must be finite numbers"),
        ("beta < 0", 0.2, -0.1, "must lie in [0, 1]"),
    ],
)
def test_mil_fractions_outside_the_feasible_set_are_refused(case, alpha, beta, problem):
    expect_clear(f"parameter: {case}", lambda: TopKBottomKMILLoss(alpha, beta), names="alpha", match=problem)


@pytest.mark.parametrize(("case", "kwargs", "problem"), [
    ("overlap = 1", {"overlap": 1.0}, "overlap must be in [0, 1)"),
    ("overlap > 1", {"overlap": 1.5}, "overlap must be in [0, 1)"),
    ("tile not a multiple of the stride", {"tile": 250}, "must be multiples of the network stride (16)"),
    ("negative workers", {"num_workers": -1}, "num_workers (-1)"),
])
def test_bad_inference_settings_are_refused_before_any_slide(case, kwargs, problem):
    settings = {"mpp": 0.5, "stride": 16, "tile": 256, "halo": 32, "num_workers": 0, "progress": False, **kwargs}
    expect_clear(f"parameter: {case}", lambda: WSIInferer(TinyFCN(), **settings), names="WSIInferer", match=problem)


def test_zero_workers_read_in_the_calling_process(slide):
    smap = inferer(TinyFCN())(slide)  # the helper uses num_workers=0
    assert np.isfinite(smap.probabilities).any()
    ds = SlideBagDataset([(slide, 1)], bag_size=2, patch_size=32, mpp=2.0, tissue_mpp=8.0, backend="tifffile")
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=0, collate_fn=lambda items: items)
    (item,) = next(iter(loader))
    assert item["image"].shape == (2, 3, 32, 32)


def test_a_patch_larger_than_the_slide_skips_the_slide_with_its_reason(slide):
    ds = SlideBagDataset([(slide, 1)], bag_size=2, patch_size=2048, mpp=0.5, backend="tifffile")
    item = ds[0]
    error = item.get("error", "")
    expect_handled("parameter: patch larger than the slide",
                   error.startswith(str(slide)) and "more than the slide's 1024x768 px" in error, repr(item))


def test_a_class_count_that_disagrees_with_the_network_is_named(slide, tmp_path):
    two = WSIInferer(TinyFCN(), mpp=0.5, stride=16, tile=256, halo=32, num_classes=2, num_workers=0, progress=False)
    expect_clear("parameter: num_classes 2, network gives 1", lambda: two(slide), names=str(slide),
                 match="expected (2, 20, 20) from num_classes=2")
    one = tmp_path / "one_class.pt"
    torch.save(ResNetFCN("resnet18", num_classes=1).state_dict(), one)
    expect_clear("parameter: checkpoint of 1 class into a 2-class network",
                 lambda: load_weights(ResNetFCN("resnet18", num_classes=2), one), names=str(one),
                 match="weights do not fit ResNetFCN")
    outputs = MapOutputs(class_names=("tumor", "stroma"))
    expect_clear("parameter: 2 class names for a 1-channel map",
                 lambda: run_cohort(inferer(TinyFCN()), [slide], tmp_path / "out", outputs),
                 names="1 of 1 slides failed", match="class")
