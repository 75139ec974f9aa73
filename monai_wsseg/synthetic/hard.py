"""Hard synthetic cohorts: what a real cohort does to weak labels, with exact truth to score it.

The demo cohort is easy: a dozen slides, one stain, and the only tumor-coloured tissue besides tumor is
lymphoid. Real cohorts are not:

* **few training slides** — a lab starts with a handful of annotated-by-label slides;
* **a colour cast per slide** (stain batch, scanner): the network can tell the slides apart by colour and
  meet a slide-label loss without ever finding tumor;
* **tumor-coloured benign tissue in normal slides**: dense lymphoid aggregates and sheets of benign
  epithelium with the tumor's mean colour, so that a colour threshold scores at most ~0.80 pixel AUC;
* **a second lab**: the same tissue through other stain vectors (bluer haematoxylin, paler eosin), a tinted
  glass, a softer scanner focus and stronger JPEG compression — what a model meets when it is shared.

:func:`make_hard_cohorts` writes both as cohort folders the MIL bundle reads (``manifest.csv`` with
``slide, label, split, mask, case, location``). Sizes are level-0 pixels at 0.5 µm/px.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from monai_wsseg.synthetic.generator import make_cohort
from monai_wsseg.synthetic.params import TextureParams

__all__ = ["HARD_PARAMS", "HOME_SPLITS", "LAB2_SPLITS", "make_hard_cohorts", "second_lab"]

#: The hard cohort's tissue: the demo's texture with per-slide casts and tumor-coloured benign tissue.
HARD_PARAMS = dataclasses.replace(
    TextureParams(),
    stain_jitter=0.12,
    colour_cast=0.10,
    benign_fraction=(0.15, 0.30),
    benign_fraction_tumor=(0.05, 0.15),
    lymph_fraction_normal=(0.20, 0.40),
    aggregates_per_mm2=1.5,
)

#: (split, n_tumor, n_normal) of the home cohort: 3 + 2 training slides, as a lab that starts small.
HOME_SPLITS = (("train", 3, 2), ("val", 2, 2), ("test", 3, 3))
#: The second lab's slides are all held out.
LAB2_SPLITS = (("test", 3, 2),)


def second_lab(params: TextureParams = HARD_PARAMS) -> TextureParams:
    """The same tissue as scanned in another lab: bluer haematoxylin, eosin at 75 %, a yellow-green glass
    tint and a focus blur of 0.6 µm (the JPEG quality is a file setting: see :func:`make_hard_cohorts`)."""
    h = np.array([0.66, 0.70, 0.30])
    h = h / np.linalg.norm(h) * np.linalg.norm(params.hematoxylin_od)
    return dataclasses.replace(
        params,
        hematoxylin_od=(float(h[0]), float(h[1]), float(h[2])),
        eosin_od=(0.75 * params.eosin_od[0], 0.75 * params.eosin_od[1], 0.75 * params.eosin_od[2]),
        glass_rgb=(236.0, 240.0, 226.0),
        blur_um=0.6,
    )


def _split_names(splits: tuple[tuple[str, int, int], ...]) -> tuple[int, int, list[str]]:
    tumor = [name for name, n_t, _ in splits for _ in range(n_t)]
    normal = [name for name, _, n_n in splits for _ in range(n_n)]
    return len(tumor), len(normal), tumor + normal


def make_hard_cohorts(out_dir: str | os.PathLike, *, size: int = 4096, seed: int = 0,
                      home_splits: tuple[tuple[str, int, int], ...] = HOME_SPLITS,
                      lab2_splits: tuple[tuple[str, int, int], ...] = LAB2_SPLITS,
                      mpp: float = 0.5) -> dict[str, Path]:
    """Write ``out_dir/home`` (the hard cohort) and ``out_dir/lab2`` (the same tissue from a second lab).

    Args:
        out_dir: parent folder; each cohort gets ``slides/``, ``masks/`` and ``manifest.csv``.
        size: slide side in level-0 pixels at ``mpp`` (default 4096 px = 2 mm at 0.5 µm/px).
        seed: cohort seed; the second lab draws other slides (seed + 1) of the same tissue model.
        home_splits, lab2_splits: ``(split, n_tumor, n_normal)`` per split.

    Existing slide files are kept, so a rerun after an interruption finishes the job.
    Returns ``{"home": manifest path, "lab2": manifest path}``.
    """
    out = Path(out_dir)
    found = {}
    for name, splits, params, quality, s in (("home", home_splits, HARD_PARAMS, 90, seed),
                                             ("lab2", lab2_splits, second_lab(HARD_PARAMS), 70, seed + 1)):
        n_tumor, n_normal, split_of = _split_names(splits)
        found[name] = make_cohort(out / name, n_tumor=n_tumor, n_normal=n_normal, size=(size, size),
                                  seed=1000 + s, mpp=mpp, params=params, splits=split_of, location=name,
                                  quality=quality, prefix=f"hard-{name}")
    return found
