"""Data the bundles read: cohort manifests, TCGA barcodes, PatchCamelyon and the synthetic demo data.

* :mod:`.manifest` — which slides, their labels, splits and expert masks (:class:`SlideRecord`,
  :func:`find_manifest_or_slides`); :mod:`.tcga` — slide labels and case-wise splits from TCGA barcodes;
* :mod:`.pcam` — PatchCamelyon, paper A's patch-level generalisation check;
* :mod:`.synthetic` / :mod:`.texture` — H&E-like synthetic slides, cohorts and patch sets with exact truth;
* :mod:`.atomic_png` — PNGs written atomically.

MIL bags live with their method, in :mod:`monai_wsseg.mil.bags`, and the WSSS patch datasets with
theirs, in :mod:`monai_wsseg.wsss.patches`; palettes and class tables in
:mod:`monai_wsseg.io.palettes`. Names are imported on first use (:mod:`monai_wsseg.utils.lazy`), so reading a
manifest does not pay for torch or MONAI.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "atomic_png": ("save_png",),
    "manifest": ("MANIFEST_COLUMNS", "MANIFEST_NAME", "MASK_EXTENSIONS", "MAX_LISTED_PROBLEMS", "SLIDE_EXTENSIONS",
                 "SlideRecord", "find_manifest_or_slides", "load_manifest", "mask_downsample", "write_manifest"),
    "pcam": ("PCamDataset", "evaluate_pcam", "pcam_preprocess"),
    "synthetic": ("RenderedSlide", "SyntheticSlide", "make_cohort", "make_patch_set", "make_slide",
                  "parse_patch_label", "render_slide", "render_texture"),
    "tcga": ("DEFAULT_FRACTIONS", "SPLIT_NAMES", "TCGABarcode", "case_id", "parse_barcode", "sample_label",
             "split_by_case"),
    "texture": ("PATCH_CLASS_KINDS", "PATCH_PALETTE", "TISSUE_KINDS", "TextureParams"),
})
