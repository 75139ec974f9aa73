"""The slide the io tests draw maps of (see :mod:`tests.io.maps`)."""

from __future__ import annotations

import pytest

from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import smooth_rgb
from tests.io.maps import SLIDE_H, SLIDE_MPP, SLIDE_W


@pytest.fixture(scope="package")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    write_pyramidal_tiff(path, smooth_rgb(SLIDE_H, SLIDE_W, seed=7), SLIDE_MPP)
    return path
