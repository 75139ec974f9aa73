"""Package faces whose names are imported on first use.

A package ``__init__`` that imported its modules eagerly would make ``import monai_wsseg.wsi.tissue`` (or
any other light module of the package) pay for torch and MONAI (several seconds). A face built here lists
its public names in ``__all__`` and imports a name's module only when the name is first read, through the
module-level ``__getattr__`` of PEP 562::

    from monai_wsseg.utils.lazy import lazy_exports

    __all__, __getattr__, __dir__ = lazy_exports(__name__, {
        "bags": ("SlideBagDataset", "collate_bags"),   # module of the package -> the names it defines
        ...
    })

``from package import Name`` and ``package.Name`` both work; the value is then cached in the package.
Standard library only: cheap to import.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for the package named ``package``.

    Args:
        package: the package's ``__name__``.
        modules: submodule name (relative to ``package``) → the public names it defines.

    Raises:
        ValueError: a name listed under two modules.
    """
    where: dict[str, str] = {}
    for module, names in modules.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name!r} is listed under both {where[name]!r} and {module!r}")
            where[name] = module
    public = sorted(where)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return public, __getattr__, __dir__
