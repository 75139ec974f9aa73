"""TCGA barcodes, sample-type labels and case-wise splits."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from monai_wsseg.datasets.tcga import (
    SPLIT_NAMES,
    TCGABarcode,
    case_id,
    parse_barcode,
    sample_label,
    split_by_case,
)

# File names in the form the GDC portal distributes slides: barcode, then the slide UUID.
DIAGNOSTIC = "TCGA-A7-A0CE-01Z-00-DX1.5B4A6F0C-96B8-4A5B-9D7B-F1F5D3C1E6A7.svs"
FROZEN_TUMOR = "TCGA-05-4244-01A-01-TS1.2f4a9e1c-7f3b-4c55-9a0e-1d2c3b4a5f60.svs"
FROZEN_NORMAL = "TCGA-05-4244-11A-01-BS1.8e7d6c5b-4a39-4281-b0c1-d2e3f4a5b6c7.svs"


@pytest.mark.parametrize(
    "name, expected",
    [
        (DIAGNOSTIC, TCGABarcode("TCGA-A7-A0CE-01Z-00-DX1", "A7", "A0CE", 1, "Z")),
        (FROZEN_TUMOR, TCGABarcode("TCGA-05-4244-01A-01-TS1", "05", "4244", 1, "A")),
        (FROZEN_NORMAL, TCGABarcode("TCGA-05-4244-11A-01-BS1", "05", "4244", 11, "A")),
        # A GDC download keeps each slide in a folder named after the file UUID.
        (
            f"/data/gdc/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/{FROZEN_NORMAL}",
            TCGABarcode("TCGA-05-4244-11A-01-BS1", "05", "4244", 11, "A"),
        ),
        (Path("slides") / DIAGNOSTIC, TCGABarcode("TCGA-A7-A0CE-01Z-00-DX1", "A7", "A0CE", 1, "Z")),
        ("TCGA-02-0001-01C-01D-0182-01", TCGABarcode("TCGA-02-0001-01C-01D-0182-01", "02", "0001", 1, "C")),
        ("tcga-e2-a14n-06a", TCGABarcode("TCGA-E2-A14N-06A", "E2", "A14N", 6, "A")),
        ("TCGA-05-4244", TCGABarcode("TCGA-05-4244", "05", "4244", None, None)),
        ("study_TCGA-AB-1234-11B_mask.png", TCGABarcode("TCGA-AB-1234-11B", "AB", "1234", 11, "B")),
    ],
)
def test_parse_barcode(name, expected):
    assert parse_barcode(name) == expected


def test_case_id_is_first_three_fields():
    assert case_id(DIAGNOSTIC) == "TCGA-A7-A0CE"
    assert case_id(FROZEN_TUMOR) == case_id(FROZEN_NORMAL) == "TCGA-05-4244"
    assert parse_barcode(FROZEN_NORMAL).case_id == "TCGA-05-4244"


@pytest.mark.parametrize(
    "name",
    [
        "slide_001.svs",
        "TCGA-A7.svs",
        "XTCGA-A7-A0CE-01Z.svs",  # inside a longer token
        "TCGA-A7-A0CE5-01Z.svs",  # participant too long
        "/data/TCGA-A7-A0CE-01Z-00-DX1/slide.svs",  # only the file name counts, not its folder
        "",
    ],
)
def test_parse_barcode_rejects_names_without_barcode(name):
    with pytest.raises(ValueError, match="no TCGA barcode") as info:
        parse_barcode(name)
    assert str(info.value).startswith(f"{name}:")


@pytest.mark.parametrize("code", ["01", "06", "09"])
def test_tumor_sample_codes(code):
    assert sample_label(f"TCGA-A7-A0CE-{code}A-01-TS1.abc.svs") == 1


@pytest.mark.parametrize("code", ["10", "11", "19"])
def test_normal_sample_codes(code):
    assert sample_label(f"TCGA-A7-A0CE-{code}A-01-BS1.abc.svs") == 0


@pytest.mark.parametrize("code", ["20", "50", "60"])
def test_unusable_sample_codes(code):
    name = f"TCGA-A7-A0CE-{code}A-01-TS1.abc.svs"
    with pytest.raises(ValueError) as info:
        sample_label(name)
    msg = str(info.value)
    assert msg.startswith(name)
    assert f"code {code}" in msg
    assert "not a usable slide label" in msg


def test_sample_label_needs_sample_field():
    with pytest.raises(ValueError, match=r"TCGA-05-4244\.svs: .*no sample-type field"):
        sample_label("TCGA-05-4244.svs")
    with pytest.raises(ValueError, match="no TCGA barcode"):
        sample_label("slide.svs")


# ----------------------------------------------------------------------------- splits


def _cohort(n_cases: int = 100, seed: int = 1) -> list[tuple[str, str, int]]:
    """(slide, case, label) items: 1-3 slides per case; tumor-only, normal-only and mixed cases."""
    rng = random.Random(seed)
    items = []
    for c in range(n_cases):
        case = f"TCGA-XX-{c:04d}"
        kind = rng.random()
        labels = [1] if kind < 0.7 else [0] if kind < 0.85 else [1, 0]
        labels = labels * rng.randint(1, 2)
        for k, lab in enumerate(labels):
            items.append((f"{case}-{'01' if lab else '11'}A-0{k}-TS1.svs", case, lab))
    return items


def _split(items, **kw):
    return split_by_case(items, case_of=lambda it: it[1], label_of=lambda it: it[2], **kw)


def _cases(split_items):
    return {it[1] for it in split_items}


def test_split_keeps_every_case_in_one_split_and_every_item_once():
    items = _cohort()
    splits = _split(items, seed=3)
    assert list(splits) == list(SPLIT_NAMES)
    assert sorted(it for s in splits.values() for it in s) == sorted(items)
    train, val, test = (_cases(splits[n]) for n in SPLIT_NAMES)
    assert not (train & val) and not (train & test) and not (val & test)


def test_split_fractions_are_counted_in_cases():
    items = _cohort(100)
    for seed in range(5):
        splits = _split(items, seed=seed)
        sizes = [len(_cases(splits[n])) for n in SPLIT_NAMES]
        for size, target in zip(sizes, (65, 15, 20), strict=True):
            assert abs(size - target) <= 1, sizes


@pytest.mark.parametrize("n_cases", [7, 23, 101])
def test_split_sizes_are_floor_or_ceil_of_share(n_cases):
    splits = _split(_cohort(n_cases), seed=0)
    for name, frac in zip(SPLIT_NAMES, (0.65, 0.15, 0.20), strict=True):
        assert abs(len(_cases(splits[name])) - n_cases * frac) < 1


def test_split_puts_both_labels_in_every_split():
    items = _cohort(100)
    for seed in range(10):
        for name, members in _split(items, seed=seed).items():
            assert {it[2] for it in members} == {0, 1}, (seed, name)


def test_split_is_stratified_by_case_label_set():
    # Strata: tumor-only, normal-only and mixed cases; each split holds each in proportion.
    items = _cohort(100)
    stratum_of: dict[str, set] = {}
    for _, case, lab in items:
        stratum_of.setdefault(case, set()).add(lab)
    strata = {frozenset(v) for v in stratum_of.values()}
    for seed in range(10):
        splits = _split(items, seed=seed)
        for stratum in strata:
            n_s = sum(1 for v in stratum_of.values() if frozenset(v) == stratum)
            for name, frac in zip(SPLIT_NAMES, (0.65, 0.15, 0.20), strict=True):
                got = sum(1 for c in _cases(splits[name]) if frozenset(stratum_of[c]) == stratum)
                assert abs(got - n_s * frac) <= 2, (seed, sorted(stratum), name, got, n_s * frac)


def test_split_repairs_label_coverage_by_swapping():
    # 20 cases, 3 normal: proportionally val would hold 0.45 normal cases, so it often has none
    # before the repair step; afterwards each split must have one, with sizes unchanged.
    items = [(f"s{c}", f"c{c:02d}", 0 if c < 3 else 1) for c in range(20)]
    for seed in range(40):
        splits = _split(items, seed=seed)
        assert [len(splits[n]) for n in SPLIT_NAMES] == [13, 3, 4]
        for name, members in splits.items():
            assert {it[2] for it in members} == {0, 1}, (seed, name)


def test_split_coverage_when_impossible_keeps_sizes():
    # Two normal cases cannot cover three splits: no error, sizes as apportioned.
    items = [(f"s{c}", f"c{c}", 0 if c < 2 else 1) for c in range(20)]
    splits = _split(items, seed=0)
    assert [len(splits[n]) for n in SPLIT_NAMES] == [13, 3, 4]
    assert sum(any(it[2] == 0 for it in m) for m in splits.values()) == 2


def test_split_is_reproducible_and_independent_of_item_order():
    items = _cohort()
    first = _split(items, seed=7)
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    again = _split(shuffled, seed=7)
    assert {n: _cases(first[n]) for n in SPLIT_NAMES} == {n: _cases(again[n]) for n in SPLIT_NAMES}
    # Items keep their input order within a split.
    assert again["train"] == [it for it in shuffled if it in set(again["train"])]


def test_split_changes_with_seed():
    items = _cohort()
    a = _split(items, seed=0)
    b = _split(items, seed=1)
    assert _cases(a["test"]) != _cases(b["test"])


def test_split_without_labels_and_with_mapping_fractions():
    items = [f"TCGA-AA-{c:04d}-01A-01-TS1.svs" for c in range(10)] + ["TCGA-AA-0000-11A-01-BS1.svs"]
    splits = split_by_case(items, case_of=case_id, fractions={"train": 0.5, "test": 0.5}, seed=0)
    assert list(splits) == ["train", "test"]
    assert {len({case_id(i) for i in s}) for s in splits.values()} == {5}
    assert sum(len(s) for s in splits.values()) == 11


def test_split_zero_fraction_and_empty_input():
    items = [(f"s{c}", f"c{c}", c % 2) for c in range(10)]
    splits = _split(items, fractions=(0.8, 0.0, 0.2), seed=0)
    assert splits["val"] == []
    assert len(splits["train"]) == 8
    assert _split([], seed=0) == {"train": [], "val": [], "test": []}


@pytest.mark.parametrize(
    "fractions, message",
    [
        ((0.5, 0.3, 0.3), "sum to 1.1"),
        ((1.2, -0.1, -0.1), "must be a finite number >= 0"),
        ((0.5, 0.5), "expected 3 values"),
        ((float("nan"), 0.5, 0.5), "finite"),
        (("a", 0.5, 0.5), "not a number"),
        ({}, "no splits"),
    ],
)
def test_split_validates_fractions(fractions, message):
    with pytest.raises(ValueError, match=message):
        _split(_cohort(10), fractions=fractions)


def test_split_rejects_empty_case_id():
    with pytest.raises(ValueError, match="non-empty string"):
        split_by_case(["a.svs"], case_of=lambda _: "")
