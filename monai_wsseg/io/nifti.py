"""Slide maps as NIfTI-1 volumes with their spacing in millimetres, for medical-imaging tools."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from monai_wsseg.io.checks import check_map, output_errors, output_path
from monai_wsseg.utils.atomic import write_atomically

if TYPE_CHECKING:  # importing the engine pulls in torch and MONAI; the writers need neither
    from monai_wsseg.inference.engine import SlideMap

__all__ = ["write_nifti"]


def write_nifti(path: str | os.PathLike, smap: SlideMap) -> Path:
    """Write the float maps as NIfTI-1 with their spacing in millimetres.

    The volume is ``(w, h, 1, C)`` float32 (axis 0 = x = map columns, axis 1 = y = rows, channels along the
    4th axis), NaN where no data; the affine scales voxels by ``smap.mpp / 1000`` mm and puts voxel
    ``(0, 0)``'s centre at half a cell from the slide's corner. Units are recorded as millimetres.

    Args:
        path: output ``.nii`` or ``.nii.gz`` file; its folder must exist.
        smap: the map.

    Returns:
        ``path``.
    """
    import nibabel as nib  # only this writer needs it

    path = output_path(path, (".nii", ".nii.gz"))
    probs = check_map(path, smap)
    spacing = float(smap.mpp) / 1000.0
    volume = np.ascontiguousarray(np.transpose(probs.astype(np.float32, copy=False), (2, 1, 0))[:, :, None, :])
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:2, 3] = spacing / 2
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = Path(str(getattr(smap, "slide", ""))).name.encode()[:79]
    compressed = path.name.lower().endswith(".gz")

    def write(tmp: Path) -> None:
        # nib.save picks the format from the file name, which the temporary file does not end with: stream
        # the single-file NIfTI instead, gzipped as nib.save does (level 1, no name or time in the header),
        # so the bytes are those nib.save would write.
        with open(tmp, "wb") as raw:
            if not compressed:
                image.to_stream(raw)
                return
            with gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0) as gz:
                image.to_stream(gz)

    with output_errors(path):
        return write_atomically(path, write)
