"""monai_wsseg.bundle.runs: the pieces the sweep's tests do not reach (argv split, override checks across
configs, one-line errors, atomic writes). parse_overrides, applicable and run_bundle are exercised by
tests/mil/test_sweep.py, tests/wsss/test_ablation.py and the end-to-end runs of tests/scripts/test_alpha_beta_sweep.py
and tests/scripts/test_wsss_ablation.py."""

from __future__ import annotations

import json

import pytest

from monai_wsseg.bundle.runs import applicable, one_line, split_argv, unknown_overrides
from monai_wsseg.errors import project_cause


def test_split_argv():
    assert split_argv(["--a", "1", "--", "--b", "2", "--", "x"]) == (["--a", "1"], ["--b", "2", "--", "x"])
    assert split_argv(["--a", "1"]) == (["--a", "1"], [])
    assert split_argv(("--",)) == ([], [])


@pytest.fixture
def configs(tmp_path):
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"lr": 0.1, "num_epochs": 2, "trainer": {"max_epochs": "@num_epochs"}}))
    infer = tmp_path / "infer.json"
    infer.write_text(json.dumps({"width": 1.0, "inferer": {"roi": 64}}))
    return [train], [infer]


def test_each_override_goes_where_its_parent_is_and_typos_are_found(configs):
    train, infer = configs
    pairs = {"lr": 0.2, "trainer#max_epochs": 3, "inferer::roi": 32, "width": 0.5, "num_epoch": 1, "nosuch#x": 0}
    assert applicable(pairs, train) == {"lr": 0.2, "trainer#max_epochs": 3, "width": 0.5, "num_epoch": 1}
    assert applicable(pairs, infer) == {"lr": 0.2, "inferer::roi": 32, "width": 0.5, "num_epoch": 1}
    # a top-level id must be defined somewhere, a nested one needs its parent somewhere
    assert unknown_overrides(pairs, [train, infer]) == ["nosuch#x", "num_epoch"]
    assert unknown_overrides(pairs, [train]) == ["inferer::roi", "nosuch#x", "num_epoch", "width"]
    assert unknown_overrides({}, [train]) == []


def test_one_line_names_the_cause_not_the_wrapper():
    try:
        try:
            raise FileNotFoundError("/x/weights.pt: not found\nmore detail")
        except FileNotFoundError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: $@net") from inner
    except RuntimeError as exc:
        assert project_cause(exc) is None  # raised here, in tests, not by the package
        assert one_line(exc) == "FileNotFoundError: /x/weights.pt: not found"
    assert one_line(ValueError()) == "ValueError"
    assert one_line(KeyError("k")) == "KeyError: 'k'"
