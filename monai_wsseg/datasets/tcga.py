"""TCGA barcodes: slide labels from sample-type codes, case ids, and case-wise splits.

A TCGA slide file is named after the barcode of the sample it was cut from, e.g.
``TCGA-A7-A0CE-01Z-00-DX1.5B4A6F0C-96B8-4A5B-9D7B-F1F5D3C1E6A7.svs``::

    TCGA - A7  - A0CE        - 01        Z    - 00      - DX1
           TSS   participant   sample    vial   portion   slide
                               type

The first three fields are the case (one patient). The first two digits of the fourth field are
the sample type (GDC "Sample Type Codes"): 01-09 are tumor samples, 10-19 normal samples, 20 and
above controls, cell lines, xenografts and the like, which carry no usable slide label.

Splits are made by case, never by slide: a patient's tumor and normal slides share tissue, stain
and scanner, so putting them in different splits leaks information (paper A, section 3.2).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TypeVar

__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLIT_NAMES",
    "TCGABarcode",
    "case_id",
    "parse_barcode",
    "sample_label",
    "split_by_case",
]

T = TypeVar("T")

#: Split names, in the order that a sequence of fractions refers to them.
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
#: Paper A's case-wise split: 65 % / 15 % / 20 % of cases.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.65, 0.15, 0.20)

# Names of the GDC sample-type codes, used only to make error messages self-explanatory.
_SAMPLE_TYPE_NAMES: dict[int, str] = {
    1: "Primary Solid Tumor",
    2: "Recurrent Solid Tumor",
    3: "Primary Blood Derived Cancer - Peripheral Blood",
    4: "Recurrent Blood Derived Cancer - Bone Marrow",
    5: "Additional - New Primary",
    6: "Metastatic",
    7: "Additional Metastatic",
    8: "Human Tumor Original Cells",
    9: "Primary Blood Derived Cancer - Bone Marrow",
    10: "Blood Derived Normal",
    11: "Solid Tissue Normal",
    12: "Buccal Cell Normal",
    13: "EBV Immortalized Normal",
    14: "Bone Marrow Normal",
    20: "Control Analyte",
    40: "Recurrent Blood Derived Cancer - Peripheral Blood",
    50: "Cell Lines",
    60: "Primary Xenograft Tissue",
    61: "Cell Line Derived Xenograft Tissue",
}

# The look-arounds stop a barcode from being found inside a longer token ("XTCGA-..."), and the
# nested optional groups let a bare case id ("TCGA-05-4244") parse without a sample field.
_BARCODE_RE = re.compile(
    r"(?<![A-Za-z0-9])TCGA-(?P<tss>[A-Z0-9]{2})-(?P<participant>[A-Z0-9]{4})"
    r"(?:-(?P<sample>[0-9]{2})(?P<vial>[A-Z])?"
    r"(?:-[0-9]{2}[A-Z]?(?:-[A-Z0-9]+){0,2})?)?"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TCGABarcode:
    """The fields of a TCGA barcode that matter for labels and splits.

    Attributes:
        barcode: the whole barcode as found, upper-cased, e.g. ``"TCGA-A7-A0CE-01Z-00-DX1"``.
        tss: tissue source site code (second field, e.g. ``"A7"``); the GDC code tables map it to
            a TCGA project.
        participant: participant code (third field, e.g. ``"A0CE"``).
        sample_type: sample-type code (first two digits of the fourth field, e.g. ``1``), or
            ``None`` when the barcode stops at the case id.
        vial: vial letter following the sample type (e.g. ``"Z"``), or ``None``.
    """

    barcode: str
    tss: str
    participant: str
    sample_type: int | None
    vial: str | None

    @property
    def case_id(self) -> str:
        """The case (patient) id: the first three fields, ``TCGA-XX-XXXX``."""
        return f"TCGA-{self.tss}-{self.participant}"


def parse_barcode(name: str | PurePath) -> TCGABarcode:
    """Parse the TCGA barcode in a bare barcode, a file name or a path.

    Only the last path component is searched, so a folder such as ``TCGA-BRCA/`` or a GDC
    download folder never lends its name to the slide inside it. Matching is case-insensitive and
    the result is upper-cased.

    Args:
        name: e.g. ``"TCGA-05-4244-11A-01-BS1.5c3e6f2a-....svs"`` or ``"/data/TCGA-05-4244-01A"``.

    Returns:
        The parsed barcode (the first one in the name).

    Raises:
        ValueError: no TCGA barcode in the name; the message names the input.
    """
    text = str(name)
    # Both separators, so a Windows path given as text on POSIX still yields its file name.
    base = re.split(r"[\\/]", text.rstrip("\\/"))[-1]
    match = _BARCODE_RE.search(base)
    if match is None:
        raise ValueError(
            f"{text}: no TCGA barcode (TCGA-XX-XXXX[-NNx...]) in the name"
        )
    sample = match.group("sample")
    vial = match.group("vial")
    return TCGABarcode(
        barcode=match.group(0).upper(),
        tss=match.group("tss").upper(),
        participant=match.group("participant").upper(),
        sample_type=int(sample) if sample is not None else None,
        vial=vial.upper() if vial is not None else None,
    )


def sample_label(name: str | PurePath) -> int:
    """Slide label from the TCGA sample-type code in ``name``: 1 = tumor, 0 = normal.

    Codes 01-09 (tumor samples) give 1 and 10-19 (normal samples) give 0. Every other code
    (20-29 controls, 50 cell lines, 60-61 xenografts, ...) is not a tumor/normal statement about
    a patient's tissue, so it is refused rather than guessed.

    Raises:
        ValueError: no barcode, a barcode without a sample field, or an unusable code. The
            message starts with ``name`` and says why.
    """
    barcode = parse_barcode(name)
    code = barcode.sample_type
    if code is None:
        raise ValueError(
            f"{name}: TCGA barcode {barcode.barcode} has no sample-type field, "
            "so it cannot give a tumor/normal label"
        )
    if 1 <= code <= 9:
        return 1
    if 10 <= code <= 19:
        return 0
    kind = _SAMPLE_TYPE_NAMES.get(code, "not a tumor or normal sample")
    raise ValueError(
        f"{name}: TCGA sample-type code {code:02d} ({kind}) is not a usable slide label: "
        "only codes 01-09 (tumor) and 10-19 (normal) give one"
    )


def case_id(name: str | PurePath) -> str:
    """The TCGA case id (``TCGA-XX-XXXX``) in ``name``; ValueError naming ``name`` if none."""
    return parse_barcode(name).case_id


def _split_names_and_fractions(
    fractions: Sequence[float] | Mapping[str, float],
) -> tuple[list[str], list[float]]:
    """Validate ``fractions`` and pair them with split names."""
    if isinstance(fractions, Mapping):
        names = [str(k) for k in fractions]
        values = list(fractions.values())
    else:
        values = list(fractions)
        if len(values) != len(SPLIT_NAMES):
            raise ValueError(
                f"fractions {tuple(values)!r}: expected {len(SPLIT_NAMES)} values for "
                f"{', '.join(SPLIT_NAMES)}, or a mapping from split name to fraction"
            )
        names = list(SPLIT_NAMES)
    if not names:
        raise ValueError("fractions: no splits given")
    out: list[float] = []
    for n, v in zip(names, values, strict=True):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"fractions: {n}={v!r} is not a number") from None
        if not math.isfinite(f) or f < 0:
            raise ValueError(f"fractions: {n}={v!r} must be a finite number >= 0")
        out.append(f)
    if abs(sum(out) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions: {dict(zip(names, out, strict=True))} sum to {sum(out):.6g}, they must sum to 1"
        )
    return names, out


def _apportion(total: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``total * fractions`` to integers that sum to ``total``.

    This is the integer vector closest to the exact shares: every count is the floor or the
    ceiling of its share. Ties go to the earlier split.
    """
    exact = [total * f for f in fractions]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def split_by_case(
    items: Sequence[T],
    *,
    case_of: Callable[[T], str],
    label_of: Callable[[T], Hashable | None] | None = None,
    fractions: Sequence[float] | Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, list[T]]:
    """Split ``items`` (slides) into train / val / test by case, never by slide.

    Rules:
        * All items of a case land in the same split.
        * Split sizes count **cases**: ``n_cases * fraction`` rounded by largest remainder, so each
          split gets the floor or the ceiling of its exact share (within one case), and a split
          with fraction 0 gets nothing.
        * Stratification (when ``label_of`` is given): a case's stratum is the set of labels of
          its items (tumor only, normal only, both). Each stratum is shuffled and spread evenly
          along one sequence which is then cut into the splits, so every split holds each stratum
          in proportion, within about one case.
        * Coverage: afterwards, every non-empty split lacking a label gets a case carrying it,
          swapped (sizes unchanged) with a case from a split that holds two or more such cases,
          only if the swap removes no label from either split. So every non-empty split holds both
          labels whenever the cohort has enough cases of each; otherwise as many as possible.
          Items whose label is ``None`` count for nothing here.
        * Reproducible: the result depends only on the set of (case, label) pairs, the fractions
          and ``seed`` -- not on the order of ``items`` -- and changes with ``seed``.

    Args:
        items: anything, e.g. slide paths or manifest records.
        case_of: the case id of an item (e.g. :func:`case_id`).
        label_of: the label of an item (e.g. :func:`sample_label`), or ``None`` not to stratify.
        fractions: three fractions for ``("train", "val", "test")``, or a mapping from split name
            to fraction; non-negative, summing to 1.
        seed: seed of the shuffle.

    Returns:
        ``{split name: items}`` with every split name present, items in their input order.

    Raises:
        ValueError: invalid fractions or an empty case id.
    """
    names, fracs = _split_names_and_fractions(fractions)

    case_items: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        case = case_of(item)
        if not isinstance(case, str) or not case:
            raise ValueError(f"{item!r}: case_of gave {case!r}, expected a non-empty string")
        case_items.setdefault(case, []).append(i)

    case_labels: dict[str, frozenset] = {}
    for case, idx in case_items.items():
        labels = (label_of(items[i]) for i in idx) if label_of is not None else ()
        case_labels[case] = frozenset(lab for lab in labels if lab is not None)

    rng = random.Random(seed)
    strata: dict[tuple, list[str]] = {}
    for case in sorted(case_items):
        strata.setdefault(tuple(sorted(case_labels[case], key=repr)), []).append(case)

    # Systematic spreading: stratum s puts its k-th case at position (k + u_s) / n_s in [0, 1).
    # Any contiguous run of the merged order then holds each stratum in proportion (+-1).
    keyed: list[tuple[float, int, str]] = []
    for s_index, key in enumerate(sorted(strata, key=repr)):
        cases = strata[key]
        rng.shuffle(cases)
        offset = rng.random()
        keyed.extend(((k + offset) / len(cases), s_index, c) for k, c in enumerate(cases))
    keyed.sort()
    ordered = [c for _, _, c in keyed]

    counts = _apportion(len(ordered), fracs)
    members: list[list[str]] = []
    start = 0
    for n in counts:
        members.append(ordered[start : start + n])
        start += n

    _ensure_label_coverage(members, case_labels)

    split_of_item: dict[int, int] = {}
    for s, cases in enumerate(members):
        for case in cases:
            for i in case_items[case]:
                split_of_item[i] = s
    result: dict[str, list[T]] = {name: [] for name in names}
    for i, item in enumerate(items):
        result[names[split_of_item[i]]].append(item)
    return result


def _label_counts(cases: Sequence[str], case_labels: Mapping[str, frozenset], all_labels: Sequence) -> dict:
    """How many of ``cases`` carry each label."""
    counts = dict.fromkeys(all_labels, 0)
    for case in cases:
        for lab in case_labels[case]:
            counts[lab] += 1
    return counts


def _keeps_labels(before: Mapping, lose: frozenset, gain: frozenset) -> bool:
    """Whether a split with label counts ``before`` keeps all its labels after a swap."""
    return all(n - (lab in lose) + (lab in gain) > 0 for lab, n in before.items() if n > 0)


def _ensure_label_coverage(members: list[list[str]], case_labels: Mapping[str, frozenset]) -> None:
    """Swap cases between splits (in place) until no non-empty split lacks a fixable label."""
    all_labels = sorted(set().union(*case_labels.values()), key=repr) if case_labels else []
    # Each accepted swap fills one (split, label) gap and opens none, so this terminates.
    improved = True
    while improved:
        improved = False
        for s, split in enumerate(members):
            for lab in all_labels:
                if split and _label_counts(split, case_labels, all_labels)[lab] == 0:
                    improved |= _fill_gap(members, s, lab, case_labels, all_labels)


def _fill_gap(
    members: list[list[str]],
    s: int,
    lab: Hashable,
    case_labels: Mapping[str, frozenset],
    all_labels: Sequence,
) -> bool:
    """Apply the first swap that gives split ``s`` a case carrying ``lab``; False if none."""
    counts_s = _label_counts(members[s], case_labels, all_labels)
    for d, donor in enumerate(members):
        if d == s:
            continue
        counts_d = _label_counts(donor, case_labels, all_labels)
        # The donor must still hold ``lab`` after giving one such case away.
        if counts_d[lab] < 2:
            continue
        for ci, c in enumerate(donor):
            if lab not in case_labels[c]:
                continue
            for ri, r in enumerate(members[s]):
                lc, lr = case_labels[c], case_labels[r]
                if _keeps_labels(counts_d, lc, lr) and _keeps_labels(counts_s, lr, lc):
                    donor[ci], members[s][ri] = r, c
                    return True
    return False
