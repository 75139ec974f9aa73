"""Paper A (MIL tumor segmentation from slide labels): the pieces of the method's own package."""

from monai_wsseg.mil.sampling import BagStepSampler
from monai_wsseg.mil.selection import SlideLabelScore, additional_metrics, key_metric

__all__ = ["BagStepSampler", "SlideLabelScore", "additional_metrics", "key_metric"]
