"""Losses: the top-α / bottom-β MIL loss of paper A."""

from monai_wsseg.losses.mil import TopKBottomKMILLoss, check_alpha_beta

__all__ = ["TopKBottomKMILLoss", "check_alpha_beta"]
