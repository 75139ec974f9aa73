"""The shared WSI engine: open slides, read regions at a target mpp, find tissue, lay patch grids.

Nothing here knows about either method; both bundles build on it. Names are imported on first
use (:mod:`monai_wsseg.utils.lazy`), so ``import monai_wsseg.wsi.tissue`` does not pay for importing
MONAI (several seconds).
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "grid": ("sample_positions", "tissue_grid"),
    "slide": ("Slide", "SlideReadError", "available_backends", "open_slide"),
    "tiff_writer": ("write_pyramidal_tiff",),
    "tissue": ("TissueMask", "compute_tissue_mask", "tissue_mask_from_rgb"),
})
