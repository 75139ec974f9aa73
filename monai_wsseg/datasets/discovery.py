"""The cohort of a dataset folder: its ``manifest.csv``, or else the TCGA slides in it.

:func:`find_manifest_or_slides` is what the bundles call with their ``dataset_dir``; it also gives every
slide a split (by case, see :func:`~monai_wsseg.datasets.tcga.split_by_case`) when asked.
:func:`find_slide_files` lists the slide files of a folder (GDC downloads put each slide in a folder of
its own), for this and for cohort inference.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_wsseg.datasets.manifest import (
    MANIFEST_NAME,
    ProblemList,
    SlideRecord,
    absolute_path,
    default_case,
    label_reason,
    load_manifest,
)
from monai_wsseg.datasets.tcga import DEFAULT_FRACTIONS, sample_label, split_by_case
from monai_wsseg.wsi.dicom import DICOM_EXTENSIONS, series_slides

__all__ = ["SLIDE_EXTENSIONS", "find_manifest_or_slides", "find_slide_files"]

SLIDE_EXTENSIONS: tuple[str, ...] = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms")


def find_slide_files(root: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """The slides under ``root``: files with an extension in :data:`SLIDE_EXTENSIONS` (any case), and DICOM
    WSI series (``.dcm`` files grouped by series: a folder holding one series stands for it, see
    :func:`~monai_wsseg.wsi.dicom.find_dicom_slides`); in sub-folders too when ``recursive``; hidden files
    and folders (a leading dot) are skipped. Sorted by path."""
    root = Path(root)
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [
        p
        for p in candidates
        if p.suffix.lower() in SLIDE_EXTENSIONS + DICOM_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    ]
    dicom = {p.parent for p in found if p.suffix.lower() in DICOM_EXTENSIONS}  # one walk for both kinds
    return sorted([p for p in found if p.suffix.lower() in SLIDE_EXTENSIONS] + series_slides(dicom))


def _assign_splits(
    records: list[SlideRecord],
    fractions: Sequence[float] | Mapping[str, float],
    seed: int,
) -> list[SlideRecord]:
    """Give every record a split: its case's split when the case has one, else by case."""
    case_split = {r.case: r.split for r in records if r.split is not None}
    pending = [r for r in records if r.split is None and r.case not in case_split]
    splits = split_by_case(
        pending, case_of=lambda r: r.case, label_of=lambda r: r.label, fractions=fractions, seed=seed
    )
    for name, members in splits.items():
        for r in members:
            case_split[r.case] = name
    return [r if r.split is not None else dataclasses.replace(r, split=case_split[r.case]) for r in records]


def find_manifest_or_slides(
    dataset_dir: str | os.PathLike,
    *,
    seed: int = 0,
    fractions: Sequence[float] | Mapping[str, float] = DEFAULT_FRACTIONS,
    assign_splits: bool = True,
    recursive: bool = True,
    require_labels: bool = True,
    check_files: bool = True,
    allow_outside_root: bool = True,
    allow_unknown_columns: bool = False,
) -> list[SlideRecord]:
    """The cohort of a dataset folder: its ``manifest.csv``, or else the TCGA slides in it.

    * ``dataset_dir`` is a CSV file, or a folder holding ``manifest.csv``: that manifest is read
      with :func:`~monai_wsseg.datasets.manifest.load_manifest`.
    * Otherwise every file with an extension in :data:`SLIDE_EXTENSIONS` (in sub-folders too when
      ``recursive``, as GDC downloads put each slide in its own folder; hidden entries skipped) is
      a slide, labelled from the TCGA barcode in its name, with the TCGA case id as case. Masks
      cannot be given this way: a cohort with masks needs a manifest.

    With ``assign_splits``, records without a split get one: the split of another slide of the
    same case when there is one, else from :func:`~monai_wsseg.datasets.tcga.split_by_case` over the
    remaining cases with ``fractions`` and ``seed``.

    Returns:
        Records in manifest order, or sorted by path for a folder of slides.

    Raises:
        FileNotFoundError: the folder does not exist, or holds no manifest and no slides.
        ValueError: manifest problems, or slides whose names give no usable label (listed).
    """
    path = absolute_path(dataset_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset folder not found")
    manifest = path if path.is_file() else path / MANIFEST_NAME
    if path.is_file() or manifest.is_file():
        records = load_manifest(
            manifest,
            require_labels=require_labels,
            check_files=check_files,
            allow_outside_root=allow_outside_root,
            allow_unknown_columns=allow_unknown_columns,
        )
    else:
        records = _records_from_slide_names(path, recursive=recursive, require_labels=require_labels)
    return _assign_splits(records, fractions, seed) if assign_splits else records


def _records_from_slide_names(root: Path, *, recursive: bool, require_labels: bool) -> list[SlideRecord]:
    slides = find_slide_files(root, recursive=recursive)
    if not slides:
        raise FileNotFoundError(
            f"{root}: no {MANIFEST_NAME} and no slide files ({' '.join(SLIDE_EXTENSIONS + DICOM_EXTENSIONS)})"
        )
    problems = ProblemList(root)
    records = []
    for p in slides:
        label: int | None = None
        try:
            label = sample_label(p.name)
        except ValueError as e:
            if require_labels:
                problems.add(f"{p.relative_to(root)}: {label_reason(str(e), p.name)}")
                continue
        records.append(SlideRecord(p, label, None, None, default_case(p.name), None))
    if problems:
        problems.add(f"write a {MANIFEST_NAME} to label or leave out these slides")
    problems.raise_if_any()
    return records
