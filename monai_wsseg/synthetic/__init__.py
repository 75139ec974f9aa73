"""Synthetic H&E-like slides, cohorts and patch sets with exact truth (demo, hard, second lab)."""

from monai_wsseg.synthetic.hard import HARD_PARAMS, HOME_SPLITS, LAB2_SPLITS, make_hard_cohorts, second_lab
from monai_wsseg.synthetic.hard_patches import HARD_PATCH_PARAMS, colour_baseline, make_hard_patch_sets

__all__ = ["HARD_PARAMS", "HARD_PATCH_PARAMS", "HOME_SPLITS", "LAB2_SPLITS", "colour_baseline", "make_hard_cohorts",
           "make_hard_patch_sets", "second_lab"]
