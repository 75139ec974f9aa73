"""The cohorts the bundles read: slide manifests, TCGA barcodes and PatchCamelyon.

* :mod:`.manifest` — the manifest CSV: which slides, their labels, splits and expert masks
  (:class:`SlideRecord`, :func:`load_manifest`, :func:`write_manifest`);
* :mod:`.discovery` — a dataset folder's cohort, its manifest or else its TCGA slides
  (:func:`find_manifest_or_slides`); :mod:`.masks` — how an expert mask maps onto its slide;
* :mod:`.tcga` — slide labels and case-wise splits from TCGA barcodes;
* :mod:`.annotations` — QuPath GeoJSON annotations as expert masks (:func:`load_annotation_mask`);
  :mod:`.roi` — drawn regions of interest that limit inference and evaluation (:func:`restrict_to_roi`);
* :mod:`.pcam` — PatchCamelyon, paper A's patch-level generalisation check.

MIL bags live with their method (:mod:`monai_wsseg.mil.bags`), the WSSS patch sets with theirs
(:mod:`monai_wsseg.wsss.patches`) and the synthetic generator in :mod:`monai_wsseg.synthetic`. Names are
imported on first use (:mod:`monai_wsseg.utils.lazy`), so reading a manifest does not pay for torch or MONAI.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "annotations": ("ANNOTATION_EXTENSIONS", "DEFAULT_CLASSES", "AnnotationPolygon", "annotation_mask_shape",
                    "load_annotation_mask", "rasterise_annotations", "read_annotations"),
    "discovery": ("SLIDE_EXTENSIONS", "find_manifest_or_slides", "find_slide_files"),
    "manifest": ("MANIFEST_COLUMNS", "MANIFEST_NAME", "MASK_EXTENSIONS", "MAX_LISTED_PROBLEMS", "ROI_EXTENSIONS",
                 "SlideRecord",
                 "load_manifest", "write_manifest"),
    "masks": ("mask_downsample",),
    "roi": ("inside", "restrict_to_roi", "roi_mask"),
    "pcam": ("PCamDataset", "evaluate_pcam", "pcam_preprocess"),
    "tcga": ("DEFAULT_FRACTIONS", "SPLIT_NAMES", "TCGABarcode", "case_id", "parse_barcode", "sample_label",
             "split_by_case"),
})
