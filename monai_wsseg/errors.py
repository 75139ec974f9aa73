"""Make the last line of a failed bundle run say what went wrong.

``python -m monai.bundle run`` evaluates every config expression inside MONAI's config parser, which
wraps any exception in ``RuntimeError: Failed to evaluate ConfigExpression ...``. The project's own
message ("<slide>: truncated file ...", "non-finite loss at iteration 12 ...") is then buried in the
middle of a chained traceback, and the line a user reads last names a config expression instead.

:func:`install_error_summary` (run when :mod:`monai_wsseg` is imported, as every bundle config does)
adds to Python's handler of uncaught exceptions: after the usual traceback it prints one line,
``monai_wsseg error: <Type>: <message>``, for the innermost exception of the chain that this package
raised. Exceptions raised only elsewhere are printed as Python always does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType

__all__ = ["SUMMARY_PREFIX", "error_summary", "install_error_summary", "project_cause", "raised_here"]

SUMMARY_PREFIX = "monai_wsseg error: "
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions behind it (``raise ... from``, then implicit context), outermost first."""
    found = [exc]
    while True:
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None or any(nxt is e for e in found):
            return found
        found.append(nxt)
        exc = nxt


def raised_here(exc: BaseException) -> bool:
    """Whether the frame that raised ``exc`` belongs to this package."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR)


def project_cause(exc: BaseException) -> BaseException | None:
    """The innermost exception of ``exc``'s chain that this package raised (it carries the project's
    message; anything inside it is a library's detail), or ``None``."""
    ours = [e for e in _chain(exc) if raised_here(e)]
    return ours[-1] if ours else None


def error_summary(exc: BaseException) -> str | None:
    """``"monai_wsseg error: <Type>: <message>"`` for a chain in which this package raised an exception
    below a wrapper of someone else's; ``None`` when there is none, or when the outermost exception is
    the project's own (its message already ends the traceback)."""
    cause = project_cause(exc)
    if cause is None or cause is exc:
        return None
    message = str(cause).strip() or "(no message)"
    return f"{SUMMARY_PREFIX}{type(cause).__name__}: {message}"


def _hook(previous, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    previous(exc_type, exc, tb)
    try:
        line = error_summary(exc)
    except Exception:  # reporting must never hide the traceback already printed
        line = None
    if line:
        sys.stderr.write(f"\n{line}\n")
        sys.stderr.flush()


def install_error_summary() -> None:
    """Chain the summary line after the current ``sys.excepthook`` (once; a custom hook such as
    IPython's is left alone)."""
    current = sys.excepthook
    if current is not sys.__excepthook__:
        return
    sys.excepthook = lambda t, e, tb: _hook(current, t, e, tb)
