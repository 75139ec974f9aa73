"""Package faces (monai_wsseg.utils.lazy): every public name resolves, and importing a face costs nothing."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import monai_wsseg
from monai_wsseg.utils.lazy import lazy_exports
from tests.conftest import PROJECT_ROOT

FACES = ["bench", "datasets", "engines", "inference", "metrics", "mil", "networks", "synthetic", "wsi", "wsss"]
PACKAGES = sorted(m.name for m in pkgutil.iter_modules(monai_wsseg.__path__) if m.ispkg)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_face_declares_its_public_names(package):
    face = importlib.import_module(f"monai_wsseg.{package}")
    assert isinstance(face.__all__, list) and face.__doc__, package


@pytest.mark.parametrize("face", FACES)
def test_every_public_name_resolves_to_its_module(face):
    package = importlib.import_module(f"monai_wsseg.{face}")
    assert package.__doc__ and package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        value = getattr(package, name)
        assert name in dir(package)
        if isinstance(value, (type, types.FunctionType)):
            assert value.__module__.startswith(f"monai_wsseg.{face}."), (face, name, value.__module__)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018


def test_importing_the_faces_imports_neither_torch_nor_monai():
    faces = "; ".join(f"import monai_wsseg.{face}" for face in FACES)
    code = f"import sys; {faces}; print(sorted(m for m in ('torch', 'monai', 'ignite') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_name_listed_twice_is_refused():
    with pytest.raises(ValueError, match="'x' is listed under both 'a' and 'b'"):
        lazy_exports("pkg", {"a": ("x",), "b": ("x", "y")})
