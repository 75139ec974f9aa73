"""Uncaught errors: one line for the project's expected errors, the traceback for bugs and in debug mode."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from monai_wsseg.errors import DEBUG_VARIABLE, SUMMARY_PREFIX, ExpectedError, is_expected
from tests.conftest import PROJECT_ROOT

MISSING_MANIFEST = "from monai_wsseg.datasets.manifest import load_manifest; load_manifest('no/such/manifest.csv')"
# a MONAI config expression wraps the project's error in its own RuntimeError, as a bundle run does
WRAPPED = ("import monai_wsseg.datasets.manifest; from monai.bundle import ConfigParser; "
           "p = ConfigParser({'x': \"$monai_wsseg.datasets.manifest.load_manifest('no/such/manifest.csv')\"}, "
           "globals={'monai_wsseg': 'monai_wsseg'}); p.get_parsed_content('x')")


def run_python(code: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != DEBUG_VARIABLE}
    if debug:
        env[DEBUG_VARIABLE] = "1"
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("code", [MISSING_MANIFEST, WRAPPED], ids=["direct", "inside a MONAI config expression"])
def test_an_expected_error_is_one_line_without_a_traceback(code):
    out = run_python(code)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines == [f"{SUMMARY_PREFIX}FileNotFoundError: no/such/manifest.csv: manifest file not found"] or (
        len(lines) == 1 and lines[0].startswith(f"{SUMMARY_PREFIX}FileNotFoundError: ")), out.stderr
    assert "Traceback" not in out.stderr


def test_debug_mode_brings_the_traceback_back():
    out = run_python(WRAPPED, debug=True)
    assert out.returncode == 1 and "Traceback" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"{SUMMARY_PREFIX}FileNotFoundError: ")


def test_a_bug_keeps_its_traceback_and_an_error_elsewhere_is_untouched():
    # a TypeError raised in the package is a bug: traceback, then the summary line
    bug = run_python("from monai_wsseg.metrics import tumor_maps; tumor_maps._histograms(object(), True)")
    assert bug.returncode == 1 and "Traceback" in bug.stderr
    assert bug.stderr.strip().splitlines()[-1].startswith("TypeError: expected an AUCAccumulator")
    elsewhere = run_python("import monai_wsseg; raise KeyError('k')")
    assert elsewhere.returncode == 1 and "Traceback" in elsewhere.stderr and SUMMARY_PREFIX not in elsewhere.stderr


def test_which_errors_count_as_expected():
    def raise_here(exc: BaseException) -> BaseException:
        try:
            raise exc
        except BaseException as caught:
            return caught

    class Cohort(ExpectedError, RuntimeError):
        pass

    # raised in tests, not in the package: nothing is the project's
    assert not is_expected(raise_here(ValueError("x")))
    from monai_wsseg.datasets.manifest import load_manifest

    with pytest.raises(FileNotFoundError) as info:
        load_manifest("no/such/manifest.csv")
    assert is_expected(info.value)
    assert issubclass(Cohort, ExpectedError)
