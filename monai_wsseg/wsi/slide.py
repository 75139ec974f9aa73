"""Open a whole-slide image and read regions at a target resolution in microns per pixel.

Everything public speaks in level-0 pixel coordinates ``(x, y)`` and in microns per pixel (mpp), never
in level indices, because scanners differ in which pyramid levels they store. Reading goes through
MONAI's WSI readers (``monai.data.OpenSlideWSIReader``, ``CuCIMWSIReader`` and a tile-aware subclass of
``TiffFileWSIReader``, see :mod:`monai_wsseg.wsi.tiff_reader`), with three additions MONAI lacks:

* a read at any mpp: the nearest level within 5 % is used as is; otherwise the coarsest level finer than
  the target is read and area-averaged down (MONAI refuses such reads);
* regions reaching past the slide border come back padded with white glass, at the size asked for;
* one clear error naming the file for every way a slide can be unusable (missing, empty, not a slide,
  truncated, no mpp), instead of a traceback from inside a reader.

A :class:`Slide` can be handed to DataLoader workers: the file handle is reopened in each process,
because a handle shared across ``fork`` corrupts concurrent JPEG decoding.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from monai_wsseg.wsi.dicom import DICOM_EXTENSIONS, DicomSeriesError, holds_dicom, series_file
from monai_wsseg.wsi.tiff_reader import PyramidTiffReader, check_tiff_integrity, tiff_mpp

__all__ = ["MPP_RTOL", "Slide", "SlideReadError", "available_backends", "open_slide", "resolve_backend"]

#: Relative tolerance within which a stored level counts as being "at" a requested mpp.
MPP_RTOL = 0.05
#: Above this many source pixels a single read is split into strips, so thumbnails of huge single-level
#: slides stay bounded in memory.
_MAX_READ_PIXELS = 64 * 2**20
_BACKGROUND = 255
_TIFF_SUFFIXES = {".svs", ".tif", ".tiff", ".btf", ".tf8", ".ndpi", ".scn", ".bif"}


class SlideReadError(ValueError):
    """A slide, or a region of it, cannot be read; the message starts with the file path."""


def available_backends() -> list[str]:
    """Backends importable in this environment, in order of preference for ``backend="auto"``."""
    found = []
    try:
        import cucim  # noqa: F401 - imported only to probe that it loads
        import torch

        if torch.cuda.is_available():
            found.append("cucim")
    except Exception:  # cuCIM raises more than ImportError when its CUDA libraries are absent
        pass
    try:
        import openslide  # noqa: F401 - imported only to probe that it loads

        found.append("openslide")
    except Exception:
        pass
    found.append("tifffile")
    return found


def resolve_backend(backend: str) -> str:
    """``"auto"`` → cuCIM with a GPU, else OpenSlide when installed, else tifffile; a named one is checked."""
    known = ("auto", "cucim", "openslide", "tifffile")
    if backend not in known:
        raise ValueError(f"unknown slide backend {backend!r}; choose one of {', '.join(known)}")
    if backend == "auto":
        return available_backends()[0]
    if backend == "cucim":
        try:
            import cucim  # noqa: F401 - imported only to probe that it loads
        except Exception as exc:
            raise ValueError(f"slide backend 'cucim' is not usable here ({exc}); install monai-wsseg[cucim]") from exc
    if backend == "openslide":
        try:
            import openslide  # noqa: F401 - imported only to probe that it loads
        except Exception as exc:
            raise ValueError(
                f"slide backend 'openslide' is not usable here ({exc}); install monai-wsseg[openslide]"
            ) from exc
    return backend


def _make_reader(backend: str) -> Any:
    # channel_dim=-1: regions come back HWC, the project's convention, without a transpose per read.
    if backend == "tifffile":
        return PyramidTiffReader(channel_dim=-1)
    if backend == "openslide":
        from monai.data import OpenSlideWSIReader

        return OpenSlideWSIReader(channel_dim=-1)
    from monai.data import CuCIMWSIReader

    return CuCIMWSIReader(channel_dim=-1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Slide:
    """A whole-slide image opened for reading.

    Args:
        path: slide file (``.svs``, generic tiled ``.tif``, ``.ndpi``, ``.mrxs`` ... as the backend allows), or a
            DICOM WSI series: its folder or any of its ``.dcm`` files (read through OpenSlide 4, see
            :mod:`monai_wsseg.wsi.dicom`).
        backend: ``"auto"``, ``"cucim"``, ``"openslide"`` or ``"tifffile"``; ``"auto"`` reads DICOM through OpenSlide.
        mpp: level-0 microns per pixel, used when the file holds none (and overriding the file when given).

    Attributes:
        path: the slide file (or DICOM series folder) as given.
        backend: the backend in use.
        mpp: level-0 microns per pixel (x and y assumed equal; the mean is used when they differ).
        dimensions: level-0 ``(width, height)`` in pixels.
        level_dimensions: ``(width, height)`` of every pyramid level, finest first.
        level_downsamples: level-0 pixels per level pixel, ``(dx, dy)`` for every level.

    Raises:
        FileNotFoundError: the file does not exist.
        SlideReadError: the file is empty, unreadable, not a slide, truncated, or has no mpp and none was given.
    """

    def __init__(self, path: str | os.PathLike, backend: str = "auto", mpp: float | None = None) -> None:
        self.path = Path(path)
        _check_file(self.path)
        if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
            raise ValueError(f"{self.path}: mpp must be a positive number of microns per pixel, got {mpp!r}")
        self._source = self.path  # the file the backend opens: for a DICOM series, one file of it
        if self.path.suffix.lower() in DICOM_EXTENSIONS or holds_dicom(self.path):
            self._source = _dicom_source(self.path, backend)
            backend = "openslide"
        self.backend = resolve_backend(backend)
        if self.path.suffix.lower() in _TIFF_SUFFIXES:
            try:
                check_tiff_integrity(self.path)
            except ValueError as exc:
                raise SlideReadError(f"{self.path}: {exc}") from None
        self._reader = _make_reader(self.backend)
        self._wsi: Any = None
        self._pid = -1
        wsi = self._handle()
        try:
            count = int(self._reader.get_level_count(wsi))
            sizes = [self._reader.get_size(wsi, level) for level in range(count)]  # (height, width)
        except Exception as exc:
            raise SlideReadError(f"{self.path}: cannot read the pyramid ({_first_line(exc)})") from None
        if count < 1 or any(h <= 0 or w <= 0 for h, w in sizes):
            raise SlideReadError(f"{self.path}: the slide has no image levels")
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple((int(w), int(h)) for h, w in sizes)
        w0, h0 = self.level_dimensions[0]
        self.dimensions: tuple[int, int] = (w0, h0)
        self.level_downsamples: tuple[tuple[float, float], ...] = tuple(
            (w0 / w, h0 / h) for w, h in self.level_dimensions
        )
        self.mpp: float = float(mpp) if mpp is not None else self._file_mpp(wsi)

    # -- handle management ------------------------------------------------------------------------------
    def _handle(self) -> Any:
        """The backend's slide object for this process (reopened after a fork)."""
        if self._wsi is None or self._pid != os.getpid():
            # A fresh reader too: readers cache per-handle state (decoded-tile stores) that must not
            # outlive the handle or cross a fork.
            self._reader = _make_reader(self.backend)
            try:
                self._wsi = self._reader.read(str(self._source))
            except Exception as exc:
                raise SlideReadError(
                    f"{self.path}: not a readable slide for the {self.backend} backend ({_first_line(exc)})"
                ) from None
            self._pid = os.getpid()
        return self._wsi

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_wsi"] = None
        state["_reader"] = _make_reader(self.backend)
        state["_pid"] = -1
        return state

    def close(self) -> None:
        """Release the file handle (a later read reopens it)."""
        wsi, self._wsi = self._wsi, None
        if wsi is not None and self._pid == os.getpid() and hasattr(wsi, "close"):
            wsi.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"Slide({str(self.path)!r}, backend={self.backend!r}, {w}x{h} px, {self.mpp:.4g} um/px)"

    # -- geometry -----------------------------------------------------------------------------------------
    def _file_mpp(self, wsi: Any) -> float:
        value: float | None = None
        try:
            if self.backend == "tifffile":
                value = tiff_mpp(wsi)
            else:
                my, mx = self._reader.get_mpp(wsi, 0)
                value = (float(mx) + float(my)) / 2
        except Exception:
            value = None
        if value is None and self.backend != "tifffile" and self.path.suffix.lower() in _TIFF_SUFFIXES:
            # Some writers put the resolution only where tifffile finds it (e.g. an SVS description).
            try:
                import tifffile

                with tifffile.TiffFile(self.path) as tf:
                    value = tiff_mpp(tf)
            except Exception:
                value = None
        if value is None or not math.isfinite(value) or value <= 0:
            raise SlideReadError(
                f"{self.path}: the file records no microns per pixel; pass mpp=<level-0 um/px> "
                "(e.g. 0.25 for 40x, 0.5 for 20x)"
            )
        return value

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def level_mpps(self) -> tuple[float, ...]:
        """Microns per pixel of every level (mean of x and y)."""
        return tuple(self.mpp * (dx + dy) / 2 for dx, dy in self.level_downsamples)

    def size_at(self, mpp: float) -> tuple[int, int]:
        """``(width, height)`` of the whole slide at ``mpp`` microns per pixel (rounded, at least 1)."""
        f = self.mpp / _check_mpp(mpp, self.path)
        w0, h0 = self.dimensions
        return max(1, round(w0 * f)), max(1, round(h0 * f))

    def level_for_mpp(self, mpp: float, rtol: float = MPP_RTOL) -> int:
        """The level to read for ``mpp``: one within ``rtol`` of it, else the coarsest level finer than it.

        When every level is coarser than ``mpp`` (a 10x slide read at 20x), level 0 is returned and the
        read upsamples it.
        """
        mpp = _check_mpp(mpp, self.path)
        mpps = self.level_mpps
        close = [i for i, m in enumerate(mpps) if abs(m - mpp) <= rtol * mpp]
        if close:
            return min(close, key=lambda i: abs(mpps[i] - mpp))
        finer = [i for i, m in enumerate(mpps) if m < mpp]
        return max(finer, key=lambda i: mpps[i]) if finer else 0

    # -- reading ------------------------------------------------------------------------------------------
    def read_level(self, location: Sequence[int], size: Sequence[int], level: int) -> np.ndarray:
        """Read a region of one stored level.

        Args:
            location: level-0 ``(x, y)`` of the region's top-left corner (may lie outside the slide).
            size: ``(width, height)`` in pixels of ``level``.
            level: pyramid level index.

        Returns:
            ``(height, width, 3)`` uint8 RGB; pixels outside the slide are white (255).
        """
        if not 0 <= level < self.level_count:
            raise ValueError(f"{self.path}: level {level} does not exist (the slide has {self.level_count})")
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise ValueError(f"{self.path}: region size must be positive, got {(w, h)}")
        dx, dy = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        lx, ly = round(x / dx), round(y / dy)  # region origin in level pixels
        x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, lw), min(ly + h, lh)
        out = np.full((h, w, 3), _BACKGROUND, dtype=np.uint8)
        if x1 <= x0 or y1 <= y0:
            return out
        # Level-0 origin of the valid part; rounding both ways keeps the level pixel grid exact.
        loc0 = (round(y0 * dy), round(x0 * dx)) if level else (y0, x0)
        try:
            patch, _ = self._reader.get_data(self._handle(), location=loc0, size=(y1 - y0, x1 - x0), level=level)
        except SlideReadError:
            raise
        except Exception as exc:
            # OpenSlide puts a handle into a permanent error state after one bad tile, so every later
            # read of the slide would fail too: drop the handle, the next read reopens the file.
            self.close()
            raise SlideReadError(
                f"{self.path}: cannot read region x={x}, y={y}, {w}x{h} px at level {level} ({_first_line(exc)})"
            ) from None
        patch = np.asarray(patch)
        ph, pw = min(patch.shape[0], y1 - y0), min(patch.shape[1], x1 - x0)
        out[y0 - ly : y0 - ly + ph, x0 - lx : x0 - lx + pw] = patch[:ph, :pw, :3]
        return out

    def read_region(self, location: Sequence[int], size: Sequence[int], mpp: float | None = None) -> np.ndarray:
        """Read a region at a target resolution.

        Args:
            location: level-0 ``(x, y)`` of the region's top-left corner (may lie outside the slide).
            size: ``(width, height)`` in pixels at ``mpp``.
            mpp: target microns per pixel; ``None`` reads level 0.

        Returns:
            ``(height, width, 3)`` uint8 RGB covering ``size × mpp`` microns from ``location``; pixels
            outside the slide are white. Off-level targets are area-averaged from a finer level.
        """
        if mpp is None:
            return self.read_level(location, size, 0)
        mpp = _check_mpp(mpp, self.path)
        level = self.level_for_mpp(mpp)
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise ValueError(f"{self.path}: region size must be positive, got {(w, h)}")
        level_mpp = self.level_mpps[level]
        if abs(level_mpp - mpp) <= MPP_RTOL * mpp:
            return self.read_level(location, (w, h), level)
        if level_mpp > mpp:
            warnings.warn(
                f"{self.path}: {mpp} um/px is finer than the slide's {level_mpp:.4g} um/px; upsampling",
                stacklevel=2,
            )
        f = mpp / level_mpp  # source pixels per output pixel
        if w * h * f * f > _MAX_READ_PIXELS and h > 1:
            # Read in horizontal strips so the source buffer stays bounded; strip seams fall on whole
            # output rows, and each strip reads its exact fractional source extent, so seams are exact.
            rows = max(1, int(_MAX_READ_PIXELS / (w * f * f)))
            x, y = (int(v) for v in location)
            strips = []
            for r0 in range(0, h, rows):
                r1 = min(h, r0 + rows)
                strips.append(self._read_resampled((x, y), (w, h), level, f, r0, r1))
            return np.concatenate(strips, axis=0)
        return self._read_resampled(location, (w, h), level, f, 0, h)

    def _read_resampled(
        self, location: Sequence[int], size: tuple[int, int], level: int, f: float, r0: int, r1: int
    ) -> np.ndarray:
        """Output rows ``r0:r1`` of a ``size`` region at ``f`` level pixels per output pixel."""
        w, _ = size
        x, y = (int(v) for v in location)
        _, dy = self.level_downsamples[level]
        # Exact fractional source window of these rows, in level pixels relative to the region origin.
        sy0, sy1 = r0 * f, r1 * f
        iy0 = math.floor(sy0)
        src_w, src_h = math.ceil(w * f), math.ceil(sy1) - iy0
        src = self.read_level((x, y + round(iy0 * dy)), (src_w, src_h), level)
        box = (0.0, sy0 - iy0, w * f, sy1 - iy0)
        resample = Image.Resampling.BOX if f >= 1 else Image.Resampling.BILINEAR
        return np.asarray(Image.fromarray(src).resize((w, r1 - r0), resample, box=box))

    def thumbnail(self, mpp: float) -> np.ndarray:
        """The whole slide at ``mpp`` microns per pixel, ``(h, w, 3)`` uint8 with ``(w, h) = size_at(mpp)``."""
        return self.read_region((0, 0), self.size_at(mpp), mpp)


def _check_mpp(mpp: float, path: Path) -> float:
    try:
        value = float(mpp)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{path}: target mpp must be a positive number of microns per pixel, got {mpp!r}")
    return value


def _check_file(path: Path) -> None:
    try:
        exists = path.exists()
    except PermissionError:  # a folder on the way that this user may not enter
        raise SlideReadError(f"{path}: not readable (permission denied on a folder of its path)") from None
    if not exists:
        raise FileNotFoundError(f"{path}: no such slide file")
    if path.is_dir() and path.suffix.lower() != ".mrxs" and not holds_dicom(path):
        raise SlideReadError(f"{path}: is a folder, not a slide file (nor a DICOM series folder)")
    if not os.access(path, os.R_OK):
        raise SlideReadError(f"{path}: not readable (permission denied)")
    if path.is_file() and path.stat().st_size == 0:
        raise SlideReadError(f"{path}: empty file (0 bytes)")


def _dicom_source(path: Path, backend: str) -> Path:
    """The file of the DICOM series at ``path`` that OpenSlide opens; only OpenSlide (4 or later) reads DICOM."""
    if backend not in ("auto", "openslide"):
        raise SlideReadError(f"{path}: a DICOM slide reads through OpenSlide 4; the {backend} backend cannot read it")
    try:
        source = series_file(path)
    except DicomSeriesError as exc:
        raise SlideReadError(str(exc)) from None
    try:
        import openslide
    except Exception:
        raise SlideReadError(f"{path}: a DICOM slide needs OpenSlide 4; install monai-wsseg[openslide]") from None
    version = getattr(openslide, "__library_version__", "4")
    if int(version.split(".")[0]) < 4:
        raise SlideReadError(f"{path}: a DICOM slide needs OpenSlide 4 or later (this is OpenSlide {version})")
    return source


def open_slide(path: str | os.PathLike, backend: str = "auto", mpp: float | None = None) -> Slide:
    """Open ``path`` as a :class:`Slide` (see there for the arguments and the errors)."""
    return Slide(path, backend=backend, mpp=mpp)
