"""Synthetic H&E-like slides, cohorts and patch sets with exact truth (demo, hard, second lab)."""

from monai_wsseg.synthetic.hard import HARD_PARAMS, HOME_SPLITS, LAB2_SPLITS, make_hard_cohorts, second_lab

__all__ = ["HARD_PARAMS", "HOME_SPLITS", "LAB2_SPLITS", "make_hard_cohorts", "second_lab"]
