"""Transforms: augmentation and standardisation of MIL bags (:mod:`monai_wsseg.transforms.bag`)."""

from monai_wsseg.transforms.bag import BagStandardize, RandBagAugment, bag_transform, gaussian_blur, hue_matrices

__all__ = ["BagStandardize", "RandBagAugment", "bag_transform", "gaussian_blur", "hue_matrices"]
