"""Fixtures shared by the inference tests."""

from __future__ import annotations

import pytest

from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import smooth_rgb


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    """A 1000 x 700 px smooth RGB pyramidal TIFF at 0.5 µm/px (one per test module)."""
    path = tmp_path_factory.mktemp("engine") / "slide.tif"
    write_pyramidal_tiff(path, smooth_rgb(700, 1000, seed=7), 0.5, quality=95)
    return path
