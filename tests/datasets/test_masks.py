"""The integer downsample at which an expert mask covers its slide."""

from __future__ import annotations

import pytest

from monai_wsseg.datasets.masks import mask_downsample


@pytest.mark.parametrize(
    "mask, slide, d",
    [
        ((250, 200), (1000, 800), 4),
        ((1000, 800), (1000, 800), 1),
        ((500, 500), (1001, 999), 2),  # 500.5 -> 500, 499.5 -> 500
        ((501, 499), (1001, 999), 2),  # ceil / floor
        ((334, 333), (1000, 1000), 3),  # 333.3 rounded up and down
        ((3125, 2500), (100000, 80000), 32),
        ((1, 1), (3, 3), 3),  # several fit: the nearest to the size ratio
    ],
)
def test_mask_downsample(mask, slide, d):
    assert mask_downsample(mask, slide, mask_path="m.png", slide_path="s.svs") == d


@pytest.mark.parametrize(
    "mask, slide, problem",
    [
        ((250, 500), (1000, 1000), "aspect ratio differs"),
        ((400, 400), (1000, 1000), "no integer downsample"),
        ((499, 500), (1000, 1000), "no integer downsample"),  # d = 2 would give 500 wide
        ((100, 300), (1000, 1000), "aspect ratio differs"),
        ((2000, 100), (1000, 1000), "larger than its slide"),
        ((0, 10), (1000, 1000), "not two positive integers"),
        ((10.5, 10), (1000, 1000), "not two positive integers"),
    ],
)
def test_mask_downsample_errors(mask, slide, problem):
    with pytest.raises(ValueError) as info:
        mask_downsample(mask, slide, mask_path="/x/tumor_mask.png", slide_path="/x/slide.svs")
    msg = str(info.value)
    assert msg.startswith("/x/tumor_mask.png: ")
    assert problem in msg
    if "positive" not in problem:
        assert "/x/slide.svs" in msg and f"{mask[0]}x{mask[1]}" in msg and f"{slide[0]}x{slide[1]}" in msg
