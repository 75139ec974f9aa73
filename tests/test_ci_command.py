"""CI runs the README's test command exactly as a new user types it, style checks included."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"Run the tests \(the same command CI runs\):\s*```bash\n(.+?)\n```", text, re.S)
    assert found, "README.md: no 'Run the tests (the same command CI runs):' bash block"
    return found.group(1).strip()


def test_ci_runs_the_readme_test_command():
    lines = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[-1].strip() == readme_test_command()


def test_the_test_command_runs_ruff_and_mypy_before_pytest():
    steps = [step.strip() for step in readme_test_command().split("&&")]
    assert steps.index(".venv/bin/ruff check .") < steps.index(".venv/bin/mypy") < steps.index(
        ".venv/bin/python -m pytest")
