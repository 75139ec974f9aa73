"""NIfTI maps: (w, h, 1, C) float32 with millimetre spacing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from monai_wsseg.io import write_nifti
from tests.io.maps import MAP_H, MAP_W, SLIDE_MPP, D, three_class_map


def test_nifti_spacing_and_values(tmp_path, slide_path):
    smap, _ = three_class_map(str(slide_path))
    out = write_nifti(tmp_path / "map.nii.gz", smap)
    img = nib.load(str(out))
    assert img.shape == (MAP_W, MAP_H, 1, 3)
    assert img.header.get_zooms()[:2] == pytest.approx((SLIDE_MPP * D / 1000,) * 2)
    assert img.header.get_xyzt_units()[0] == "mm"
    data = np.asarray(img.dataobj)
    np.testing.assert_array_equal(data[:, :, 0, :], np.transpose(smap.probabilities, (2, 1, 0)))
