"""Synthetic H&E-like slides, cohorts and patch sets with exact truth: the demo data, the hard cohorts and
their second lab.

* the tissue model: :mod:`.params` (the tissue kinds and :class:`TextureParams`), :mod:`.layouts` (where
  each kind is), :mod:`.nuclei`, :mod:`.stains` (colour), :mod:`.fields` (hashes and smooth random fields)
  and :mod:`.texture`, which renders a block of pixels from them;
* :mod:`.generator` — slides, cohorts and patch sets written as files (:func:`make_slide`,
  :func:`make_cohort`, :func:`make_patch_set`);
* :mod:`.hard` / :mod:`.hard_patches` — the harder cohort and patch set of the stability protocol, and a
  second lab's copy of each (:func:`make_hard_cohorts`, :func:`make_hard_patch_sets`).

Names are imported on first use (:mod:`monai_wsseg.utils.lazy`).
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "generator": ("RenderedSlide", "SyntheticSlide", "make_cohort", "make_patch_set", "make_slide",
                  "parse_patch_label", "render_slide", "render_texture"),
    "hard": ("HARD_PARAMS", "HOME_SPLITS", "LAB2_SPLITS", "make_hard_cohorts", "second_lab"),
    "hard_patches": ("HARD_PATCH_PARAMS", "colour_baseline", "make_hard_patch_sets"),
    "params": ("PATCH_CLASS_KINDS", "TISSUE_KINDS", "TextureParams"),
})
