"""monai-wsseg: weakly supervised whole-slide segmentation components for MONAI bundles."""

from monai_wsseg.errors import install_error_summary

__version__ = "0.1.0"

# Bundle configs import this package: a failed `python -m monai.bundle run` then ends with the project's
# own one-line message instead of MONAI's "Failed to evaluate ConfigExpression" (see errors.py).
install_error_summary()
