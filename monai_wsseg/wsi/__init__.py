"""The shared WSI engine: open slides, read regions at a target mpp, find tissue, lay patch grids.

Nothing here knows about either method; both bundles build on it.
"""

from monai_wsseg.wsi.grid import sample_positions, tissue_grid
from monai_wsseg.wsi.slide import Slide, SlideReadError, available_backends, open_slide
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from monai_wsseg.wsi.tissue import TissueMask, compute_tissue_mask, tissue_mask_from_rgb

__all__ = [
    "Slide",
    "SlideReadError",
    "TissueMask",
    "available_backends",
    "compute_tissue_mask",
    "open_slide",
    "sample_positions",
    "tissue_grid",
    "tissue_mask_from_rgb",
    "write_pyramidal_tiff",
]
