"""Rules of the package's layout: every module at most 500 lines, and modules use each other's public names only
(a ``_private`` name is its module's own business; a name another module needs is public, in its ``__all__``)."""

from __future__ import annotations

import ast
from pathlib import Path

import monai_wsseg

PACKAGE = Path(monai_wsseg.__file__).parent
MAX_LINES = 500
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def test_every_module_is_at_most_500_lines():
    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules()}
    long = {name: n for name, n in lines.items() if n > MAX_LINES}
    assert not long, f"split these modules into files named by what they hold: {long}"


def test_modules_import_no_private_names_of_other_modules():
    found = set()
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("monai_wsseg"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__") and node.module != name:
                        found.add((name, alias.name))
    extra = sorted(found - KNOWN_PRIVATE_IMPORTS)
    assert not extra, f"make these names public (no leading _): {extra}"
