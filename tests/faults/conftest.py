"""The fault suite's bookkeeping: every bad input goes through :func:`expect_clear` or :func:`expect_handled`,
every output folder through :func:`assert_no_partial`, and the run ends with the tally the issue asks for
(bad inputs tried / clear message / raw traceback / partial output / traceback printed by the error hook).

"Clear" means: the exception the caller gets was raised by this project's code (not by numpy, PIL,
tifffile, torch ... from inside), and its first line names the file or the setting at fault. Anything
else counts as a raw traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monai_wsseg.errors import is_expected, raised_here

TALLY = {"tried": 0, "clear": 0, "raw": 0, "partial": 0, "traceback": 0}
DETAILS: list[tuple[str, str]] = []
#: Figures the interruption tests measured, printed with the tally (name → text).
MEASURED: dict[str, str] = {}


def _record(case: str, outcome: str) -> None:
    TALLY["tried"] += 1
    TALLY[outcome] += 1
    DETAILS.append((case, outcome))


def expect_clear(case: str, call: Callable[[], Any], *, names: str, match: str) -> BaseException:
    """Run ``call`` on a bad input; it must fail with a clear error.

    Args:
        case: a short name of the bad input, for the tally.
        call: the action that must fail.
        names: text the first line of the message must contain (the file, folder or setting at fault).
        match: text the message must contain (the problem).

    Returns:
        The exception, for further checks.
    """
    try:
        call()
    except Exception as exc:  # the point is to classify whatever comes out
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        clear = raised_here(exc) and names in first and match in str(exc)
        _record(case, "clear" if clear else "raw")
        assert clear, f"{case}: not a clear error: {type(exc).__name__}: {exc!s:.500}"
        # What a user of `python -m monai.bundle run` would see: the error hook (monai_wsseg.errors) prints
        # one line for an expected error and a traceback for anything else.
        if not is_expected(exc):
            TALLY["traceback"] += 1
            DETAILS.append((case, f"would print a traceback ({type(exc).__name__})"))
        assert is_expected(exc), f"{case}: {type(exc).__name__} is not an expected error type: traceback printed"
        return exc
    _record(case, "raw")
    pytest.fail(f"{case}: no error was raised")


def expect_handled(case: str, explained: bool, detail: str) -> None:
    """A bad input the run is meant to survive (corrupted tiles, a blank slide ...): it counts as a clear
    message when ``explained`` (a warning or a report says what happened), else as a raw failure."""
    _record(case, "clear" if explained else "raw")
    assert explained, f"{case}: handled but not explained: {detail}"


def assert_no_partial(case: str, folder: Path, *, killed: bool = False) -> None:
    """Every output under a final name in ``folder`` is complete, and no temporary file is left behind
    (after a ``kill -9`` a temporary may remain: it never carries a final name)."""
    import tifffile
    import torch

    bad = []
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        if path.is_dir():
            continue
        if path.name.startswith((".", "tmp")):
            if not killed:
                bad.append(f"{path.name}: temporary file left behind")
            continue
        try:
            if path.suffix in (".json", ".geojson"):
                json.loads(path.read_text())
            elif path.suffix in (".tif", ".tiff"):
                tifffile.imread(path)
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True)
            elif path.suffix == ".png":
                from PIL import Image

                with Image.open(path) as im:
                    im.load()
        except Exception as exc:  # any failure to read back means a partial file
            bad.append(f"{path.name}: incomplete ({type(exc).__name__})")
    if bad:
        TALLY["partial"] += 1
        DETAILS.append((case, "partial: " + "; ".join(bad)))
    assert not bad, f"{case}: partial outputs: {bad}"


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temporary folder that other users can reach (``tmp_path`` is private to its owner), for checks
    that drop privileges to see permission errors even when the suite runs as root."""
    path = Path(tempfile.mkdtemp(prefix="wsseg-faults-"))
    path.chmod(0o777)
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _outcome(call: Callable[[], Any]) -> list | None:
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc), raised_here(exc)]
    return None


def as_unprivileged(call: Callable[[], Any]) -> tuple[str, str, bool] | None:
    """Run ``call`` as an ordinary user; return ``(exception type name, message, raised by this project)``,
    or ``None`` when it raised nothing. As root (permission bits do not bind root) it runs in a forked
    child that switches to the ``nobody`` user first; otherwise it runs here."""
    if os.geteuid() != 0:
        found = _outcome(call)
        return None if found is None else (found[0], found[1], found[2])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        os.close(read)
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(_outcome(call)).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the unprivileged child failed"
    result = json.loads(b"".join(chunks) or b"null")
    return None if result is None else (result[0], result[1], bool(result[2]))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not TALLY["tried"] and not MEASURED:
        return
    terminalreporter.section("fault suite tally")
    terminalreporter.write_line(
        f"bad inputs tried: {TALLY['tried']}, clear message: {TALLY['clear']}, raw traceback: {TALLY['raw']}, "
        f"partial output: {TALLY['partial']}, traceback printed for an expected failure: {TALLY['traceback']}"
    )
    for case, outcome in DETAILS:
        if outcome != "clear":
            terminalreporter.write_line(f"  {case}: {outcome}")
    for name, text in MEASURED.items():
        terminalreporter.write_line(f"{name}: {text}")
