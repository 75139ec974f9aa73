"""DICOM whole-slide images (DICOM Supplement 145): one slide is one *series*, stored as several files.

A scanner or converter (``wsidicomizer``) writes a slide as a folder of ``.dcm`` files, one per pyramid
level plus label and overview images, all sharing a ``SeriesInstanceUID``. OpenSlide 4 opens any one of
them as the whole slide (it finds the other files of the series in the same folder) and reads the
level-0 resolution from ``PixelSpacing``; this module decides *which* file to hand it:

* :func:`series_file` — a folder holding one series, or any file of a series → the file to open, with a
  clear error for a folder of several series or a file OpenSlide cannot classify (no ``ImageType``);
* :func:`find_dicom_slides` — the slides among the DICOM files under a folder, grouped by series, for
  cohort discovery: a folder holding one series is named by the folder, otherwise by its first file.

Headers are read with pydicom (the ``openslide`` extra), without pixel data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DICOM_EXTENSIONS", "DicomSeriesError", "find_dicom_slides", "holds_dicom", "is_dicom", "series_file",
           "series_slides"]

DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
_PREAMBLE = 128  # bytes before the "DICM" magic of a DICOM Part 10 file
_SERIES_UID = (0x0020, 0x000E)
_IMAGE_TYPE = (0x0008, 0x0008)


class DicomSeriesError(ValueError):
    """A DICOM file or folder that is not one readable slide; the message starts with the path."""


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (the ``DICM`` magic after its 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_PREAMBLE + 4)
    except OSError:
        return False
    return head[_PREAMBLE:] == b"DICM"


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in DICOM_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def holds_dicom(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a folder with at least one ``.dcm`` / ``.dicom`` file directly in it."""
    folder = Path(folder)
    return folder.is_dir() and bool(_dicom_files(folder))


def _header(path: Path) -> tuple[str | None, tuple[str, ...] | None]:
    """``(SeriesInstanceUID, ImageType)`` of one file, each None when absent."""
    try:
        import pydicom
    except ImportError as exc:
        raise DicomSeriesError(
            f"{path}: reading DICOM slides needs pydicom; install monai-wsseg[openslide]"
        ) from exc
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[_SERIES_UID, _IMAGE_TYPE])
    except Exception as exc:
        raise DicomSeriesError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    uid = ds.get("SeriesInstanceUID")
    image_type = ds.get("ImageType")
    if image_type is not None and isinstance(image_type, str):
        image_type = [image_type]
    return (str(uid) if uid else None), (tuple(str(v) for v in image_type) if image_type else None)


def _group_by_series(files: Iterable[Path]) -> tuple[dict[str, list[Path]], dict[Path, tuple[str, ...] | None]]:
    """The files by SeriesInstanceUID, and each file's ImageType (read with it: one header read per file)."""
    series: dict[str, list[Path]] = {}
    image_types: dict[Path, tuple[str, ...] | None] = {}
    for p in files:
        uid, image_types[p] = _header(p)
        series.setdefault(uid or f"(no SeriesInstanceUID: {p.name})", []).append(p)
    return series, image_types


def series_file(path: str | os.PathLike) -> Path:
    """The file to open for the DICOM slide at ``path`` (a series folder, or one file of a series).

    Raises:
        DicomSeriesError: the folder holds no DICOM files or several series, or the file lacks the
            ``ImageType`` (0008,0008) attribute that tells pyramid levels from label and overview images.
    """
    path = Path(path)
    if path.is_dir():
        files = _dicom_files(path)
        if not files:
            raise DicomSeriesError(f"{path}: folder holds no DICOM files ({', '.join(DICOM_EXTENSIONS)})")
        series, image_types = _group_by_series(files)
        if len(series) > 1:
            raise DicomSeriesError(
                f"{path}: folder holds {len(series)} DICOM series ({', '.join(sorted(series))}); "
                "name one file of the series to read, or give each series a folder of its own"
            )
        path, image_type = files[0], image_types[files[0]]
    else:
        _, image_type = _header(path)
    if image_type is None:
        raise DicomSeriesError(
            f"{path}: DICOM file without ImageType (0008,0008), which tells a slide's pyramid levels from its "
            "label and overview images; re-export the slide as a DICOM WSI series (e.g. with wsidicomizer)"
        )
    return path


def find_dicom_slides(root: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """The DICOM slides under ``root``, one path per series: the folder when it holds a single series,
    else the first file (by name) of each series. Hidden files and folders are skipped. Sorted by path."""
    root = Path(root)
    candidates = root.rglob("*") if recursive else root.iterdir()
    return series_slides(
        p.parent for p in candidates
        if p.suffix.lower() in DICOM_EXTENSIONS and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    )


def series_slides(folders: Iterable[Path]) -> list[Path]:
    """One path per DICOM series in ``folders`` (folders holding ``.dcm`` files): the folder when it holds a
    single series, else the first file (by name) of each series. Sorted by path."""
    slides: list[Path] = []
    for folder in sorted(set(folders)):
        files = _dicom_files(folder)
        if not files:
            continue
        series, _ = _group_by_series(files)
        slides += [folder] if len(series) == 1 else [members[0] for members in series.values()]
    return sorted(slides)
