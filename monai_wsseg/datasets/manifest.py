"""Cohort manifest: which slides, their slide-level labels, splits and optional expert masks.

A manifest is a CSV file with a header row. Columns (names are case-insensitive):

==========  ========  ==========================================================================
column      required  meaning
==========  ========  ==========================================================================
slide       yes       slide path, absolute or relative to the CSV's folder
label       no        1 = tumor, 0 = normal ("0", "1", "0.0", "1.0"); when empty, taken from the
                      TCGA barcode in the slide's file name (:func:`~monai_wsseg.datasets.tcga.sample_label`)
split       no        ``train``, ``val`` or ``test`` (case-insensitive); empty = unassigned
mask        no        expert tumor mask: one-channel PNG or TIFF covering the whole slide at an
                      integer downsample of level 0 (see
                      :func:`~monai_wsseg.datasets.masks.mask_downsample`); non-zero = tumor; or
                      a QuPath GeoJSON export in level-0 pixels whose ``Tumor`` regions are tumor
                      (:mod:`~monai_wsseg.datasets.annotations`)
case        no        patient id; defaults to the TCGA case id of the slide, else the slide's stem
location    no        organ / site, free text (used to break metrics down)
roi         no        QuPath GeoJSON of drawn regions (level-0 pixels, every class): inference and
                      evaluation keep to the tissue inside them
                      (:func:`~monai_wsseg.datasets.annotations.restrict_to_roi`)
==========  ========  ==========================================================================

Rules where a choice had to be made:

* An explicit label that contradicts the slide's TCGA barcode wins; a single ``UserWarning`` lists
  such rows (a curated label is more specific than a sample-type code).
* A mask on a label-0 slide is allowed: it is the reference for an all-normal slide and is
  expected to be empty. Mask contents are not read here.
* A case id given in the ``case`` column wins over the one in the barcode, without a warning.
* Values are stripped of surrounding white space; blank lines are skipped and are not counted as
  rows. Missing trailing fields are empty; extra trailing fields must be empty.
* Paths are normalised lexically (``a/../b`` -> ``b``), not through symlinks, so a cohort folder
  of symlinks to slides elsewhere still counts as "inside the CSV's folder".
* All problems of a file are reported together (up to :data:`MAX_LISTED_PROBLEMS` lines). When
  every problem is a missing file the error is a ``FileNotFoundError``, else a ``ValueError``.

:func:`load_manifest` reads and checks a manifest, :func:`write_manifest` writes one. Finding a dataset
folder's cohort (its manifest, or else the TCGA slides in it) is :mod:`monai_wsseg.datasets.discovery`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from monai_wsseg.datasets.tcga import SPLIT_NAMES, parse_barcode, sample_label
from monai_wsseg.utils.atomic import write_text_atomically

__all__ = [
    "MANIFEST_COLUMNS",
    "MANIFEST_NAME",
    "MASK_EXTENSIONS",
    "MAX_LISTED_PROBLEMS",
    "ROI_EXTENSIONS",
    "ProblemList",
    "SlideRecord",
    "absolute_path",
    "default_case",
    "is_within",
    "label_reason",
    "load_manifest",
    "write_manifest",
]

MANIFEST_COLUMNS: tuple[str, ...] = ("slide", "label", "split", "mask", "case", "location", "roi")
MANIFEST_NAME = "manifest.csv"
# the GeoJSON ones are monai_wsseg.datasets.annotations.ANNOTATION_EXTENSIONS, written out: no numpy here
ROI_EXTENSIONS: tuple[str, ...] = (".geojson", ".json")
MASK_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff", *ROI_EXTENSIONS)
#: At most this many problems are listed in one error; the rest are counted.
MAX_LISTED_PROBLEMS = 20

# "1.0" is accepted because pandas writes an integer column holding blanks as floats.
_LABEL_RE = re.compile(r"^[01](?:\.0*)?$")


@dataclass(frozen=True)
class SlideRecord:
    """One slide of a cohort.

    Attributes:
        slide: absolute slide path.
        label: 1 = tumor, 0 = normal, ``None`` = unknown (only with ``require_labels=False``).
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (unassigned).
        mask: absolute path of the expert tumor mask, or ``None``.
        case: patient id; all slides of a case share a split.
        location: organ / site, or ``None``.
        roi: absolute path of a GeoJSON of drawn regions (any class) that limit inference and evaluation to
            the tissue inside them, or ``None`` (the whole slide).
    """

    slide: Path
    label: int | None
    split: str | None
    mask: Path | None
    case: str
    location: str | None = None
    roi: Path | None = None

    def __post_init__(self) -> None:
        # Frozen, so conversions go through object.__setattr__; they let callers pass strings.
        object.__setattr__(self, "slide", Path(self.slide))
        if self.mask is not None:
            object.__setattr__(self, "mask", Path(self.mask))
        if self.roi is not None:
            object.__setattr__(self, "roi", Path(self.roi))
        if self.label is not None and (isinstance(self.label, bool) or self.label not in (0, 1)):
            raise ValueError(f"{self.slide}: label {self.label!r} is not 0, 1 or None")
        if self.split is not None and self.split not in SPLIT_NAMES:
            raise ValueError(
                f"{self.slide}: split {self.split!r} is not one of {', '.join(SPLIT_NAMES)} or None"
            )
        if not isinstance(self.case, str) or not self.case:
            raise ValueError(f"{self.slide}: case {self.case!r} must be a non-empty string")


class ProblemList:
    """Collects the problems of one input so that they are all reported at once.

    :meth:`raise_if_any` raises one error listing them (at most :data:`MAX_LISTED_PROBLEMS`), prefixed by
    ``source``: a ``FileNotFoundError`` when every problem is a missing file, else a ``ValueError``.
    """

    def __init__(self, source: Path) -> None:
        self.source = source
        self.items: list[tuple[str, bool]] = []

    def add(self, message: str, *, missing_file: bool = False) -> None:
        """Record a problem; ``missing_file`` marks one that only a missing file causes."""
        self.items.append((message, missing_file))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        """Raise the collected problems as one error (see the class docstring); nothing when there are none."""
        if not self.items:
            return
        messages = [m for m, _ in self.items]
        if len(messages) == 1:
            text = f"{self.source}: {messages[0]}"
        else:
            shown = messages[:MAX_LISTED_PROBLEMS]
            lines = [f"{self.source}: {len(messages)} problems:"] + [f"  {m}" for m in shown]
            if len(messages) > len(shown):
                lines.append(f"  ... and {len(messages) - len(shown)} more")
            text = "\n".join(lines)
        if all(missing for _, missing in self.items):
            raise FileNotFoundError(text)
        raise ValueError(text)


def absolute_path(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded, made absolute and normalised lexically (symlinks are not resolved)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def is_within(path: Path, root: Path) -> bool:
    """Whether the absolute ``path`` lies inside the absolute folder ``root`` (lexically)."""
    try:
        return os.path.commonpath([str(path), str(root)]) == str(root)
    except ValueError:  # different drives on Windows
        return False


def default_case(slide_text: str) -> str:
    """TCGA case id when the file name holds a barcode, else the file's stem."""
    try:
        return parse_barcode(slide_text).case_id
    except ValueError:
        name = re.split(r"[\\/]", slide_text.rstrip("\\/"))[-1]
        stem = Path(name).stem
        return stem or name


def load_manifest(
    csv_path: str | os.PathLike,
    *,
    require_labels: bool = True,
    check_files: bool = True,
    allow_outside_root: bool = True,
    allow_unknown_columns: bool = False,
) -> list[SlideRecord]:
    """Read and validate a cohort manifest.

    Args:
        csv_path: the manifest CSV (UTF-8, optional BOM).
        require_labels: a row without a label, and without a TCGA barcode that gives one, is an
            error; when False its label is ``None``.
        check_files: slide and mask files must exist.
        allow_outside_root: when False, a path that leaves the CSV's folder (through ``..`` or as
            an absolute path elsewhere) is an error -- useful for bundles shipped with their data.
        allow_unknown_columns: ignore columns other than :data:`MANIFEST_COLUMNS` instead of
            refusing them (a misspelt ``lable`` column would otherwise go unnoticed).

    Returns:
        One record per data row, in file order, with absolute paths.

    Raises:
        FileNotFoundError: the CSV does not exist, or every problem found is a missing file.
        ValueError: any other problem. The message starts with the CSV path; each problem line
            gives the 1-based data row and the file line, e.g. ``row 3 (line 4): label 'yes' is
            not 0 or 1``.
    """
    csv_path = absolute_path(csv_path)
    if not csv_path.exists():
        raise FileNotFoundError(f"{csv_path}: manifest not found")
    if csv_path.is_dir():
        raise ValueError(f"{csv_path}: is a folder, expected a manifest CSV file")
    root = csv_path.parent
    problems = ProblemList(csv_path)

    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            rows = _read_rows(f, csv_path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{csv_path}: not UTF-8 text ({e})") from None

    if not rows:
        raise ValueError(
            f"{csv_path}: empty manifest, expected a header row with columns "
            f"{', '.join(MANIFEST_COLUMNS)} (only 'slide' is required)"
        )
    columns, col_index = _header_columns(*rows[0], problems, allow_unknown_columns)
    if len(rows) == 1:
        problems.add("no slide rows, only a header")
        problems.raise_if_any()

    records: list[SlideRecord] = []
    # (case, split, where) of every row with a valid split, usable or not, so that a case split
    # across rows is reported even next to other problems of those rows.
    placed: list[tuple[str, str, str]] = []
    first_row_of_slide: dict[Path, str] = {}
    contradictions: list[str] = []

    for row_number, (line, fields) in enumerate(rows[1:], start=1):
        where = f"row {row_number} (line {line})"
        extra = fields[len(columns):]
        if any(v.strip() for v in extra):
            problems.add(f"{where}: {len(fields)} fields but the header has {len(columns)}")
        # The row's cells by column name; a short row has no cell for its last columns.
        cells = {column: fields[i].strip() for column, i in col_index.items() if i < len(fields)}

        row_ok = True
        slide_text = cells.get("slide", "")
        slide: Path | None = None
        if not slide_text:
            problems.add(f"{where}: empty 'slide' path")
            row_ok = False
        else:
            slide, ok = _check_path(slide_text, "slide", root, where, problems,
                                    check_files=check_files, allow_outside_root=allow_outside_root)
            if slide in first_row_of_slide:
                problems.add(f"{where}: slide '{slide_text}' duplicates {first_row_of_slide[slide]}")
                ok = False
            else:
                first_row_of_slide[slide] = where
            row_ok = row_ok and ok

        label, ok = _row_label(cells.get("label", ""), slide_text, where, problems, contradictions,
                               require_labels=require_labels)
        row_ok = row_ok and ok

        split, ok = _row_split(cells.get("split", ""), where, problems)
        row_ok = row_ok and ok

        files: dict[str, Path | None] = {}
        for kind, extensions in (("mask", MASK_EXTENSIONS), ("roi", ROI_EXTENSIONS)):
            text = cells.get(kind, "")
            files[kind], ok = (None, True) if not text else _check_path(
                text, kind, root, where, problems, check_files=check_files,
                allow_outside_root=allow_outside_root, extensions=extensions)
            row_ok = row_ok and ok
        mask, roi = files["mask"], files["roi"]

        case = cells.get("case", "") or (default_case(slide_text) if slide_text else "")
        location = cells.get("location", "") or None

        if split is not None and case:
            placed.append((case, split, where))
        if row_ok and slide is not None:
            records.append(SlideRecord(slide, label, split, mask, case, location, roi))

    _check_case_splits(placed, problems)
    problems.raise_if_any()
    if contradictions:
        shown = contradictions[:MAX_LISTED_PROBLEMS]
        more = len(contradictions) - len(shown)
        warnings.warn(
            f"{csv_path}: {len(contradictions)} explicit label(s) contradict the TCGA barcode; "
            "the explicit label is used:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else ""),
            UserWarning,
            stacklevel=2,
        )
    return records


def _header_columns(
    header_line: int, header: list[str], problems: ProblemList, allow_unknown_columns: bool
) -> tuple[list[str], dict[str, int]]:
    """The header's column names (stripped, lower case) and the index of each known one; problems go to
    ``problems``, which is raised at once when there is no 'slide' column."""
    columns = [h.strip().lower() for h in header]
    allowed = ", ".join(MANIFEST_COLUMNS)
    col_index: dict[str, int] = {}
    unknown: list[str] = []
    for i, name in enumerate(columns):
        if name in col_index:
            problems.add(f"line {header_line}: column '{name}' appears twice")
        elif name in MANIFEST_COLUMNS:
            col_index[name] = i
        elif not allow_unknown_columns:
            unknown.append(f"'{name}'" if name else f"<unnamed column {i + 1}>")
    if unknown:
        problems.add(
            f"line {header_line}: unknown column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)} (allowed: {allowed}; or pass allow_unknown_columns=True)"
        )
    if "slide" not in col_index:
        problems.add(
            f"line {header_line}: missing required column 'slide' "
            f"(found: {', '.join(repr(c) for c in columns)}; allowed: {allowed})"
        )
        problems.raise_if_any()
    return columns, col_index


def _row_label(
    label_text: str,
    slide_text: str,
    where: str,
    problems: ProblemList,
    contradictions: list[str],
    *,
    require_labels: bool,
) -> tuple[int | None, bool]:
    """A row's label (explicit, else from the slide's TCGA barcode, else ``None``) and whether it is usable.
    A bad or missing label goes to ``problems``; an explicit label the barcode contradicts, to ``contradictions``."""
    barcode_label: int | None = None
    barcode_reason: str | None = None
    if slide_text:
        try:
            barcode_label = sample_label(slide_text)
        except ValueError as e:
            barcode_reason = str(e)
    if label_text:
        if not _LABEL_RE.match(label_text):
            problems.add(f"{where}: label '{label_text}' is not 0 (normal) or 1 (tumor)")
            return None, False
        label = int(float(label_text))
        if barcode_label is not None and barcode_label != label:
            contradictions.append(
                f"{where}: label {label} but the TCGA barcode of '{slide_text}' says {barcode_label}"
            )
        return label, True
    if barcode_label is not None:
        return barcode_label, True
    if require_labels and slide_text:
        problems.add(f"{where}: no label, and {label_reason(barcode_reason, slide_text)}")
        return None, False
    return None, True


def _row_split(text: str, where: str, problems: ProblemList) -> tuple[str | None, bool]:
    """A row's split (any case; ``None`` when blank) and whether it is valid (else a problem is added)."""
    split = text.lower()
    if not split:
        return None, True
    if split in SPLIT_NAMES:
        return split, True
    problems.add(f"{where}: split '{text}' is not one of {', '.join(SPLIT_NAMES)}")
    return None, False


def _read_rows(f, csv_path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with the file line each starts on."""
    reader = csv.reader(f)
    rows: list[tuple[int, list[str]]] = []
    previous_end = 0
    try:
        for fields in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if any(v.strip() for v in fields):
                rows.append((start, fields))
    except csv.Error as e:
        raise ValueError(f"{csv_path}: line {reader.line_num}: not valid CSV ({e})") from None
    return rows


def label_reason(barcode_reason: str | None, slide_text: str) -> str:
    """Why a slide has no label: from :func:`~monai_wsseg.datasets.tcga.sample_label`'s error message
    (``barcode_reason``, ``None`` when it gave none), for the problem lists."""
    if barcode_reason is None or "no TCGA barcode" in barcode_reason:
        return f"the name '{slide_text}' holds no TCGA barcode to take it from"
    # sample_label's message starts with the slide name, which the row already shows.
    return barcode_reason.split(": ", 1)[-1]


def _check_path(
    text: str,
    kind: str,
    root: Path,
    where: str,
    problems: ProblemList,
    *,
    check_files: bool,
    allow_outside_root: bool,
    extensions: Sequence[str] | None = None,
) -> tuple[Path, bool]:
    """Resolve ``text`` against ``root``; record its problems (a suffix not in ``extensions`` too);
    return (path, usable)."""
    expanded = os.path.expanduser(text)
    path = Path(os.path.normpath(expanded if os.path.isabs(expanded) else root / expanded))
    ok = True
    if extensions is not None and path.suffix.lower() not in extensions:
        problems.add(f"{where}: {kind} '{text}' is not a {', '.join(extensions)} file")
        ok = False
    if not allow_outside_root and not is_within(path, root):
        problems.add(f"{where}: {kind} '{text}' is outside the manifest's folder {root}")
        ok = False
    if check_files:
        if not path.exists():
            problems.add(f"{where}: {kind} file not found: {path}", missing_file=True)
            ok = False
        elif kind in ("mask", "roi") and not path.is_file():
            problems.add(f"{where}: {kind} {path} is not a file")
            ok = False
    return path, ok


def _check_case_splits(placed: Sequence[tuple[str, str, str]], problems: ProblemList) -> None:
    first: dict[str, tuple[str, str]] = {}
    for case, split, where in placed:
        seen = first.setdefault(case, (split, where))
        if seen[0] != split:
            problems.add(
                f"{where}: case '{case}' is in split '{split}' here but in '{seen[0]}' "
                f"at {seen[1]}; all slides of a case must share one split"
            )


def write_manifest(records: Iterable[SlideRecord], csv_path: str | os.PathLike) -> Path:
    """Write ``records`` as a manifest that :func:`load_manifest` reads back to the same records.

    Paths inside the CSV's folder are written relative to it (POSIX separators), so the folder
    can be moved; others stay absolute. A record's relative path is taken relative to the
    current directory. The file is written atomically (:func:`~monai_wsseg.utils.atomic.write_text_atomically`).

    Returns:
        The absolute path of the written CSV.
    """
    csv_path = absolute_path(csv_path)
    root = csv_path.parent
    root.mkdir(parents=True, exist_ok=True)

    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        p = absolute_path(p)
        if is_within(p, root):
            return Path(os.path.relpath(p, root)).as_posix()
        return str(p)

    rows = [
        [
            rel(r.slide),
            "" if r.label is None else str(r.label),
            r.split or "",
            rel(r.mask),
            r.case,
            r.location or "",
            rel(r.roi),
        ]
        for r in records
    ]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    write_text_atomically(csv_path, text.getvalue())
    return csv_path
