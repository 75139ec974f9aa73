"""A tile-aware tifffile backend for MONAI's WSI reading, and TIFF integrity and resolution checks.

MONAI's ``TiffFileWSIReader`` (monai 1.6) decodes the *whole level* for every patch it returns and
treats every TIFF page as a pyramid level, so an Aperio SVS's thumbnail, label and macro pages become
"levels". :class:`PyramidTiffReader` keeps MONAI's interface but reads the pyramid series only, and
decodes only the tiles a region touches (through tifffile's zarr store).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from monai.data import TiffFileWSIReader
from typing_extensions import override

__all__ = ["PyramidTiffReader", "check_tiff_integrity", "tiff_mpp"]

_UNIT_MICRONS = {"CENTIMETER": 1e4, "INCH": 25400.0, "MILLIMETER": 1e3, "MICROMETER": 1.0}


def _levels(wsi: tifffile.TiffFile) -> list:
    """The pyramid of the main image series, finest first."""
    series = wsi.series[0]
    return list(series.levels) if series.levels else [series]


_OME_UNITS = {"µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}


def _ome_mpp(xml: str) -> float | None:
    """Microns per pixel of the first OME ``Pixels`` element (mean of x and y), or ``None``."""
    pixels = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if pixels is None:
        return None
    values = []
    for axis in ("X", "Y"):
        size = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', pixels.group(0))
        unit = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', pixels.group(0))
        scale = _OME_UNITS.get(unit.group(1) if unit else "µm")
        if size is None or scale is None or float(size.group(1)) <= 0:
            return None
        values.append(float(size.group(1)) * scale)
    return float(np.mean(values))


def tiff_mpp(wsi: tifffile.TiffFile) -> float | None:
    """Level-0 microns per pixel recorded in a TIFF, or ``None`` when it records none.

    Looks at an Aperio description (``MPP = 0.499``), then an OME-XML ``PhysicalSizeX/Y`` (OME-TIFF, with
    its unit; microns when none is given), then the X/Y resolution tags with their unit. A resolution unit
    of "none" (or a missing tag) means no physical size is known.
    """
    page = wsi.pages.first
    desc = page.description or ""
    if "Aperio" in desc:
        m = re.search(r"MPP\s*=\s*([0-9.eE+-]+)", desc)
        if m:
            return float(m.group(1))
    if wsi.is_ome:
        ome = _ome_mpp(wsi.ome_metadata or "")
        if ome is not None:
            return ome
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    unit = tags.get("ResolutionUnit")
    unit_name = getattr(getattr(unit, "value", None), "name", None)
    scale = _UNIT_MICRONS.get(str(unit_name).upper()) if unit_name else None
    if scale is None:
        return None
    values = []
    for key in ("XResolution", "YResolution"):
        num, den = tags[key].value
        if not num or not den:
            return None
        values.append(scale * den / num)  # microns per unit / pixels per unit
    return float(np.mean(values))


def check_tiff_integrity(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` when a TIFF cannot be parsed or its pyramid's tile data lies past its end.

    A download that stopped early still opens in most readers, which then fail (or return garbage) on
    the first missing tile, hours into a job; this check catches it at open time, cheaply.
    """
    size = Path(path).stat().st_size
    try:
        with tifffile.TiffFile(path) as tf:
            extents = []
            for level in _levels(tf):
                page = level.pages[0] if getattr(level, "pages", None) else level
                offsets = np.asarray(page.dataoffsets, dtype=np.int64)
                counts = np.asarray(page.databytecounts, dtype=np.int64)
                extents.append(int((offsets + counts).max()) if offsets.size else -1)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise ValueError(f"not a readable TIFF slide ({type(exc).__name__}: {text[0] if text else ''})") from None
    for i, end in enumerate(extents):
        if end < 0:
            raise ValueError(f"pyramid level {i} has no image data")
        if end > size:
            raise ValueError(f"truncated file: level {i} image data ends at byte {end} but the file has {size} bytes")


class PyramidTiffReader(TiffFileWSIReader):
    """MONAI ``TiffFileWSIReader`` that reads pyramid levels only and decodes only the tiles it needs.

    Same arguments as ``monai.data.TiffFileWSIReader``. ``location`` is level-0 ``(y, x)`` and ``size``
    is ``(height, width)`` at ``level``, as everywhere in MONAI's readers.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._arrays: dict[tuple[int, int], Any] = {}

    @override
    def get_level_count(self, wsi: tifffile.TiffFile) -> int:  # type: ignore[override]  # MONAI's is static
        return len(_levels(wsi))

    @override
    def get_size(self, wsi: tifffile.TiffFile, level: int) -> tuple[int, int]:
        shape = _levels(wsi)[level].shape
        return int(shape[0]), int(shape[1])

    @override
    def get_downsample_ratio(self, wsi: tifffile.TiffFile, level: int) -> float:
        return self.get_size(wsi, 0)[0] / self.get_size(wsi, level)[0]

    @override
    def get_mpp(self, wsi: tifffile.TiffFile, level: int) -> tuple[float, float]:
        mpp = tiff_mpp(wsi)
        if mpp is None:
            raise ValueError(f"{self.get_file_path(wsi)}: the file records no microns per pixel")
        h0, w0 = self.get_size(wsi, 0)
        h, w = self.get_size(wsi, level)
        return mpp * h0 / h, mpp * w0 / w

    def _array(self, wsi: tifffile.TiffFile, level: int) -> Any:
        key = (id(wsi), level)
        if key not in self._arrays:
            import zarr

            # series.aszarr(level=L) gives one level's array; levels[0].aszarr() would give the whole
            # multiscale group, because level 0 is the series itself.
            self._arrays[key] = zarr.open(wsi.series[0].aszarr(level=level), mode="r")
        return self._arrays[key]

    def _get_patch(self, wsi, location, size, level, dtype, mode) -> np.ndarray:
        ds = self.get_downsample_ratio(wsi, level)
        y, x = round(location[0] / ds), round(location[1] / ds)
        patch = np.asarray(self._array(wsi, level)[y : y + size[0], x : x + size[1]])
        if patch.ndim == 2:
            patch = np.repeat(patch[..., None], 3, axis=-1)
        channels = 4 if mode == "RGBA" else 3
        if patch.shape[-1] < channels:
            raise ValueError(f"{self.get_file_path(wsi)}: {patch.shape[-1]} colour channels, {mode} needs {channels}")
        patch = patch[..., :channels].astype(dtype, copy=False)
        return np.moveaxis(patch, -1, self.channel_dim)
