"""Shared fixtures: where the real test slides live, and small synthetic pyramids made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"
CMU_SLIDE = REAL_DATA / "CMU-1-Small-Region.svs"


def real_file(name: str) -> Path:
    """A file of the shared real test data, or a skip saying where it was looked for."""
    path = REAL_DATA / name
    if not path.exists():
        pytest.skip(f"real test data not found: {path} (clone the project beside shared/)")
    return path


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (H, W, 3) uint8: JPEG-friendly, yet every region is different."""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 230, size=(height // 32 + 2, width // 32 + 2, 3))
    img = zoom(coarse, (32, 32, 1), order=1)[:height, :width]
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a test module, restored after. Tiny inputs gain nothing from more,
    and on a shared 2-core machine threads waiting on each other made such tests ~10× slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def load_script(name: str):
    """``scripts/<name>.py`` as a fresh module (not registered in ``sys.modules``): a test calls its ``main``.

    Scripts are command-line faces of package functions; they define no classes and import no other script,
    so nothing needs to find them by module name.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"scripts.{name}", PROJECT_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
