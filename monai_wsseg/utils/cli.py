"""What every command-line script does the same way: refuse bad input in one line, write its figures as JSON.

Standard library only (plus :mod:`monai_wsseg.utils.atomic`), so a script pays nothing for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from monai_wsseg.utils.atomic import write_text_atomically

__all__ = ["refuse", "write_json"]


def refuse(exc: BaseException) -> NoReturn:
    """Print ``refused: <first line of the message>`` (the type's name when there is none) to stderr and
    exit with status 2: the end of a script given input it cannot use."""
    text = str(exc)
    print(f"refused: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
    raise SystemExit(2) from None


def write_json(path: str | os.PathLike, payload: Any, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``payload`` as indented JSON to ``path`` (its folder made when missing), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, json.dumps(payload, indent=2, default=default) + "\n")
