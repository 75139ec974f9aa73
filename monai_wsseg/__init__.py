"""monai-wsseg: weakly supervised whole-slide segmentation components for MONAI bundles."""

__version__ = "0.1.0"
