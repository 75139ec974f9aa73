"""The shared WSI engine: open slides, read regions at a target mpp, find tissue, lay patch grids.

* :mod:`.slide` (and :mod:`.tiff_reader`, :mod:`.dicom` for DICOM WSI series) — open a slide and read
  regions at a target mpp;
* :mod:`.tissue` — the tissue mask of a slide (:class:`TissueMask`), built from the thumbnail's colour
  (:mod:`.colour`) with pen ink left out (:mod:`.pen`); :mod:`.grid` — patch grids over the tissue;
* :mod:`.stain` — stain maths (optical density, HED jitter, per-slide normalisation);
  :mod:`.tiff_writer` — pyramidal TIFFs.

Nothing here knows about either method; both bundles build on it. Names are imported on first
use (:mod:`monai_wsseg.utils.lazy`), so ``import monai_wsseg.wsi.tissue`` does not pay for importing
MONAI (several seconds).
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "dicom": ("DICOM_EXTENSIONS", "DicomSeriesError", "find_dicom_slides", "series_file", "series_slides"),
    "grid": ("sample_positions", "tissue_grid"),
    "pen": ("pen_mask_from_rgb",),
    "slide": ("Slide", "SlideReadError", "available_backends", "open_slide"),
    "tiff_writer": ("write_pyramidal_tiff",),
    "tissue": ("TissueMask", "compute_tissue_mask", "tissue_mask_from_rgb"),
})
