"""Make the last line of a failed bundle run say what went wrong.

``python -m monai.bundle run`` evaluates every config expression inside MONAI's config parser, which
wraps any exception in ``RuntimeError: Failed to evaluate ConfigExpression ...``. The project's own
message ("<slide>: truncated file ...", "non-finite loss at iteration 12 ...") is then buried in the
middle of a chained traceback, and the line a user reads last names a config expression instead.

:func:`install_error_summary` (run when :mod:`monai_wsseg` is imported, as every bundle config does)
takes over Python's handler of uncaught exceptions:

* an error this package raises on purpose (:func:`is_expected`: bad input, a bad slide, a checkpoint that
  does not fit, a cohort with failed slides …) prints one line, ``monai_wsseg error: <Type>: <message>``,
  and no traceback: the traceback of a MONAI config expression says nothing a user can act on;
* any other exception whose chain this package raised (a bug) prints the usual traceback, then that line;
* exceptions raised only elsewhere are printed as Python always does.

``MONAI_WSSEG_DEBUG=1`` in the environment brings the traceback back for every error. The exit status
stays Python's for an uncaught exception (1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

__all__ = ["DEBUG_VARIABLE", "EXPECTED_ERRORS", "SUMMARY_PREFIX", "ExpectedError", "error_summary",
           "install_error_summary", "is_expected", "project_cause", "raised_here"]

SUMMARY_PREFIX = "monai_wsseg error: "
#: Environment variable that brings the traceback back for expected errors too.
DEBUG_VARIABLE = "MONAI_WSSEG_DEBUG"


class ExpectedError(Exception):
    """Mixin of the project's own exception types that are not a ``ValueError`` or an ``OSError`` but
    still report a problem of the input or the run, not a bug (e.g. a cohort whose slides failed)."""


#: The types of the errors the package raises on purpose: bad values and files (``ValueError``, its
#: subclasses such as ``SlideReadError``; ``OSError`` such as ``FileNotFoundError``), non-finite numbers
#: (``FloatingPointError``) and :class:`ExpectedError`. A ``TypeError``, ``KeyError``, ``AttributeError``
#: … raised in the package is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, FloatingPointError, ExpectedError)
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


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc``'s chain holds an error this package raised on purpose (see :data:`EXPECTED_ERRORS`)."""
    cause = project_cause(exc)
    return cause is not None and isinstance(cause, EXPECTED_ERRORS)


def _hook(previous, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    try:
        quiet = is_expected(exc) and os.environ.get(DEBUG_VARIABLE, "") in ("", "0")
        cause = project_cause(exc) if quiet else None
    except Exception:  # reporting must never hide an error: fall back to Python's traceback
        quiet, cause = False, None
    if quiet and cause is not None:
        message = str(cause).strip() or "(no message)"
        sys.stderr.write(f"{SUMMARY_PREFIX}{type(cause).__name__}: {message}\n")
        sys.stderr.flush()
        return
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
