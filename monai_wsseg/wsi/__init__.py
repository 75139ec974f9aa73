"""The shared WSI engine: open slides, read regions at a target mpp, find tissue, lay patch grids.

Nothing here knows about either method; both bundles build on it. Names are imported on first
use, so ``import monai_wsseg.wsi.tissue`` does not pay for importing MONAI (several seconds).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "sample_positions": "grid",
    "tissue_grid": "grid",
    "Slide": "slide",
    "SlideReadError": "slide",
    "available_backends": "slide",
    "open_slide": "slide",
    "write_pyramidal_tiff": "tiff_writer",
    "TissueMask": "tissue",
    "compute_tissue_mask": "tissue",
    "tissue_mask_from_rgb": "tissue",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
