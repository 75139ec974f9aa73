"""Every project name a bundle config names resolves, so a moved or renamed module cannot break a bundle
silently (MONAI would only fail when that part of the config is instantiated).

Collected from every JSON config of every bundle under ``bundles/``: ``_target_`` values under
``monai_wsseg.``, the modules of ``$import`` / ``$from ... import`` expressions, and every dotted
``monai_wsseg.a.b.c`` inside a ``$`` expression. A name resolves when its longest importable module prefix
imports and the rest are attributes of it.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

NAMESPACE = "monai_wsseg"
CONFIGS = sorted((PROJECT_ROOT / "bundles").glob("*/configs/*.json"))
DOTTED = re.compile(rf"(?<![\w.]){NAMESPACE}(?:\.[A-Za-z_]\w*)+")
IMPORT = re.compile(r"^\s*import\s+(.+)$")
FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+(.+)$")


def _imported(expression: str) -> Iterator[tuple[str, bool]]:
    """``(name, must_be_module)`` of a ``$import`` / ``$from`` expression (without its ``$``)."""
    if m := IMPORT.match(expression):
        for part in m.group(1).split(","):
            yield part.split(" as ")[0].strip(), True
    elif m := FROM_IMPORT.match(expression):
        yield m.group(1), True
        for part in m.group(2).strip("() ").split(","):
            yield f"{m.group(1)}.{part.split(' as ')[0].strip()}", False


def config_names(config: object) -> list[tuple[str, bool]]:
    """``(dotted name, must_be_module)`` of every project name the parsed JSON ``config`` names, in order."""
    found: list[tuple[str, bool]] = []

    def visit(node: object, key: str | None = None) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                visit(v, k)
        elif isinstance(node, list):
            for v in node:
                visit(v)
        elif isinstance(node, str):
            if key == "_target_" and node.startswith(f"{NAMESPACE}."):
                found.append((node, False))
            elif node.startswith("$"):
                expression = node[1:]
                imported = list(_imported(expression))
                if imported:
                    found.extend(n for n in imported if n[0].split(".")[0] == NAMESPACE)
                else:
                    found.extend((name, False) for name in DOTTED.findall(expression))

    visit(config)
    return list(dict.fromkeys(found))


def resolve(name: str, must_be_module: bool = False) -> str | None:
    """``None`` when ``name`` resolves, else why not."""
    parts = name.split(".")
    if must_be_module:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            return f"no module {exc.name!r}"
        return None
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name) and exc.name.startswith(NAMESPACE):
                continue  # this prefix is not a module of the project: try a shorter one
            raise  # a module that exists failed to import: let the test show why
        for i, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):
                where = ".".join(parts[:i])
                return f"{where} has no attribute {attr!r}"
            obj = getattr(obj, attr)
        return None
    return f"no module {parts[0]!r}"


def test_every_bundle_config_is_checked():
    bundles = {p.parents[1].name for p in CONFIGS}
    assert {"mil_tumor_segmentation", "wsss_tissue_segmentation"} <= bundles
    names = {n for n, _ in config_names(json.loads((PROJECT_ROOT / "bundles" / "mil_tumor_segmentation" / "configs"
                                                    / "train.json").read_text()))}
    # one of each kind: a _target_, an import, a name inside an expression
    assert {"monai_wsseg.mil.trainer.MILTrainer", "monai_wsseg.mil.trainer",
            "monai_wsseg.mil.trainer.mil_slides"} <= names


def test_collects_targets_imports_and_expression_names():
    config = {
        "imports": ["$import os", "$import monai_wsseg.a.b as ab, monai_wsseg.c", "$from monai_wsseg.d import e, f"],
        "net": {"_target_": "monai_wsseg.g.H", "other": {"_target_": "SimpleInferer"}},
        "x": "$monai_wsseg.i.j(@y, monai_wsseg.k.L) + notmonai_wsseg.m.n",
        "plain": "monai_wsseg.not.an.expression",
    }
    assert config_names(config) == [
        ("monai_wsseg.a.b", True), ("monai_wsseg.c", True), ("monai_wsseg.d", True), ("monai_wsseg.d.e", False),
        ("monai_wsseg.d.f", False), ("monai_wsseg.g.H", False), ("monai_wsseg.i.j", False),
        ("monai_wsseg.k.L", False),
    ]


def test_resolve_says_what_is_missing():
    assert resolve("monai_wsseg.mil.trainer.MILTrainer") is None
    assert resolve("monai_wsseg.mil.BagStepSampler") is None  # a lazy package face
    assert resolve("monai_wsseg.mil.trainer", must_be_module=True) is None
    assert resolve("monai_wsseg.engines.mil.MILTrainer") == "monai_wsseg.engines has no attribute 'mil'"
    assert resolve("monai_wsseg.mil.trainer.NoSuch") == "monai_wsseg.mil.trainer has no attribute 'NoSuch'"
    assert resolve("monai_wsseg.engines.mil", must_be_module=True) == "no module 'monai_wsseg.engines.mil'"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_config_names_resolve(config: Path):
    names = config_names(json.loads(config.read_text(encoding="utf-8")))
    broken = [f"  {name}: {why}" for name, module in names if (why := resolve(name, module)) is not None]
    assert not broken, f"{config.relative_to(PROJECT_ROOT)} names what does not exist:\n" + "\n".join(broken)
