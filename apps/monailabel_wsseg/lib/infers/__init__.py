"""Inference tasks of the monai-wsseg MONAI Label app."""

from lib.infers.bundle_region import BundleRegionInfer, BundleSpec, region_box

__all__ = ["BundleRegionInfer", "BundleSpec", "region_box"]
