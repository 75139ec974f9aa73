"""Trust: checkpoints are data, never code; the bundle docs say a config is code; a failed bundle run
ends with the project's own message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from monai_wsseg.engines.checkpoints import ResumeCheckpointLoader
from monai_wsseg.errors import SUMMARY_PREFIX
from monai_wsseg.networks.checkpoint import load_checkpoint, load_weights
from tests.conftest import PROJECT_ROOT
from tests.faults.conftest import expect_clear


class _RunsCode:
    """Pickles as a call of ``os.system``: loading it with plain ``torch.load`` would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "model.pt"
    torch.save({"model": torch.nn.Linear(2, 1).state_dict(), "extra": _RunsCode(marker)}, path)
    return path, marker


def test_a_checkpoint_holding_code_is_refused_and_never_run(evil):
    path, marker = evil
    expect_clear("trust: checkpoint with pickled code (weights)", lambda: load_weights(torch.nn.Linear(2, 1), path),
                 names=str(path), match="refused: the file holds pickled Python objects (posix.system)")
    engine = Engine(lambda e, b: None)
    loader = ResumeCheckpointLoader(load_path=str(path), load_dict={"model": torch.nn.Linear(2, 1), "trainer": engine})
    expect_clear("trust: checkpoint with pickled code (resume)", lambda: loader(engine), names=str(path),
                 match="trusted sources only")
    assert not marker.exists()


def test_damaged_checkpoints_are_named(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": torch.nn.Linear(2, 1).state_dict()}, good)
    data = good.read_bytes()
    cases = {"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a checkpoint\n"}
    for name, content in cases.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        expect_clear(f"trust: {name} checkpoint", lambda p=path: load_checkpoint(p), names=str(path),
                     match="cannot be read as a checkpoint")
    assert load_checkpoint(good)["model"]["weight"].shape == (1, 2)


def test_every_torch_load_in_the_package_is_weights_only():
    calls = []
    for folder in ("monai_wsseg", "scripts"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            for m in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
                calls.append((path.relative_to(PROJECT_ROOT), m.group(1)))
    assert calls, "no torch.load found: the scan is broken"
    unsafe = [(str(p), args) for p, args in calls if "weights_only=True" not in args]
    assert not unsafe, unsafe


def test_both_bundle_docs_warn_that_a_config_runs_code():
    for bundle in ("mil_tumor_segmentation", "wsss_tissue_segmentation"):
        text = (PROJECT_ROOT / "bundles" / bundle / "docs" / "README.md").read_text()
        assert re.search(r"\*\*Trust\.\*\*|^## Trust", text, flags=re.M), bundle
        trust = text[text.find("Trust"):]
        assert "config is code" in trust and "trust" in trust.lower() and "weights_only=True" in trust, bundle


_WRAPPED = """
import monai_wsseg
from monai_wsseg.utils.output_dir import check_output_dir
try:
    check_output_dir({path!r})
except Exception as exc:
    raise RuntimeError("Failed to evaluate ConfigExpression: $check(@output_dir)") from exc
"""


def test_a_wrapped_project_error_ends_the_output_as_one_line(tmp_path):
    """What ``python -m monai.bundle run`` does to a project error (wraps it), in a real interpreter."""
    (tmp_path / "afile").write_text("x")
    target = str(tmp_path / "afile" / "out")
    env = {k: v for k, v in os.environ.items() if k != "MONAI_WSSEG_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", _WRAPPED.format(path=target)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=60, env=env)
    # an expected error: the project's line alone, no traceback of the wrapper
    assert proc.returncode == 1 and "Failed to evaluate" not in proc.stderr and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{SUMMARY_PREFIX}OutputDirError: {target}: output folder is not writable"), lines
