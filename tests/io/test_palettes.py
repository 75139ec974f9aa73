"""Colour tables and palette PNG masks: exact colours, round trip, no temporary left, clear errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from monai_wsseg.io.palettes import (
    PALETTES,
    class_palette,
    default_colors,
    flat_palette,
    index_palette,
    write_palette_mask,
)
from monai_wsseg.wsss.patches import read_index_mask

C = 4  # LUAD-HistoSeg classes: TE NEC LYM TAS; background index 4


def test_palette_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, C + 1, (40, 56))
    path = write_palette_mask(tmp_path / "sub" / "m.png", mask, PALETTES["luad"])
    with Image.open(path) as im:
        assert im.mode == "P" and im.size == (56, 40)
        pal = im.getpalette()[: 3 * (C + 1)]
        rgb = np.asarray(im.convert("RGB"))
    assert np.array_equal(read_index_mask(path), mask)
    assert [tuple(pal[i : i + 3]) for i in range(0, len(pal), 3)] == [
        (205, 51, 51), (0, 255, 0), (65, 105, 225), (255, 165, 0), (255, 255, 255)]
    assert tuple(rgb[mask == 2][0]) == (65, 105, 225)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.png"]  # no temp file left
    with pytest.raises(ValueError, match=r"indices \[5\] but the palette has 5 colours"):
        write_palette_mask(tmp_path / "bad.png", np.full((4, 4), 5), PALETTES["luad"])
    assert not (tmp_path / "bad.png").exists()
    # BCSS: distinct colours; unknown class names still get distinct colours
    assert len(set(PALETTES["bcss"])) == 5
    pal6 = class_palette(["TE", "A", "B", "C", "D", "E"])
    assert len(set(pal6)) == 7 and pal6[-1] == (255, 255, 255)


def test_tensor_masks_and_palette_errors(tmp_path):
    mask = torch.tensor([[0, 1], [2, 3]], requires_grad=False)
    path = write_palette_mask(tmp_path / "t.png", mask, PALETTES["bcss"])
    assert np.array_equal(read_index_mask(path), mask.numpy())
    with pytest.raises(ValueError, match=r"\.png"):
        write_palette_mask(tmp_path / "t.tif", mask, PALETTES["bcss"])
    with pytest.raises(ValueError, match="integer class indices"):
        write_palette_mask(tmp_path / "f.png", np.zeros((2, 2), np.float32), PALETTES["bcss"])
    with pytest.raises(ValueError, match=r"\(r, g, b\) triples"):
        flat_palette([(1, 2)])
    with pytest.raises(ValueError, match=re.escape("masks use indices 0..5")):
        flat_palette(PALETTES["bcss"], needed=6)
    assert flat_palette([1, 2, 3]) == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.png"]


def test_colour_tables():
    assert index_palette(3, background_index=4)[4] == (255, 255, 255)
    assert len(set(index_palette(4))) == 4
    colours = default_colors(25)  # past the fixed palette: generated hues, still distinct
    assert len(set(colours)) == 25 and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colours)
    # (the synthetic patch sets draw their masks with CLASS_COLOURS: tests/synthetic/test_generator.py)
