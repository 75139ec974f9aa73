"""Hard synthetic patch sets: the hard cohort's ideas (:mod:`monai_wsseg.synthetic.hard`) applied to the
LUAD-HistoSeg style patch set the WSSS bundle trains on (classes TE, NEC, LYM, TAS).

The demo patch set varies its stain only a little (10 % jitter per patch, no cast) and its necrosis is a few
levels of 255 off tumor-associated stroma (TAS). Here:

* **a colour cast and a stronger stain jitter per patch** (patches come from many slides, batches and
  scanners): a colour picked up on one patch says little about the next;
* **necrosis with the mean colour of tumor-associated stroma** (``necrosis_he`` tuned to TAS's mean RGB,
  within 1.2 of 255 per channel on plain stain; tumor and lymphoid already share theirs): necrosis differs
  only by texture (nuclear dust and ghost nuclei in a granular matrix instead of wavy fibres and spindle
  nuclei);
* **a second lab**: the same tissue model through :func:`~monai_wsseg.synthetic.hard.second_lab` (bluer
  haematoxylin, paler eosin, tinted glass, 0.6 µm focus blur) stored as JPEG at quality 70, test split only.

Colour alone, measured with :func:`colour_baseline` (a Gaussian per class over the optical density of a pixel,
fitted on ``val``, scored on ``test``, white background ignored as the bundle's evaluation does) on the
full-size sets (300 / 60 / 60 patches of 224 px at 1 µm/px, seed 0):

==============================  =====  =====  =====  =====  =====  =====
set, colour of                  TE     NEC    LYM    TAS    MIoU   ACC
==============================  =====  =====  =====  =====  =====  =====
hard home, a pixel              0.184  0.310  0.296  0.395  0.296  0.481
hard home, a 9 x 9 px mean      0.280  0.319  0.317  0.450  0.342  0.519
hard home, a 25 x 25 px mean    0.317  0.274  0.417  0.448  0.364  0.544
demo set (60 / 60), a pixel     0.110  0.341  0.345  0.400  0.299  0.488
demo set (60 / 60), 9 x 9 px    0.233  0.395  0.323  0.451  0.351  0.521
==============================  =====  =====  =====  =====  =====  =====

The demo set was already built so that colour confuses its pairs (its necrosis is within ~4 of 255 of TAS),
so colour alone does about as poorly there; what the hard set adds is that no colour rule carries from one
patch (or lab) to the next, and that necrosis can only be told from TAS by its texture. Generating both
full-size sets takes ~13 s on 2 cores; the baseline ~1 s per setting.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from monai_wsseg.metrics.tissue import TissueConfusion
from monai_wsseg.synthetic.generator import make_patch_set
from monai_wsseg.synthetic.hard import second_lab
from monai_wsseg.synthetic.params import TextureParams

__all__ = ["CLASS_NAMES", "HARD_PATCH_PARAMS", "LAB2_QUALITY", "colour_baseline", "make_hard_patch_sets"]

#: LUAD-HistoSeg's classes, in its label order; the masks' background (glass) index is ``len(CLASS_NAMES)``.
CLASS_NAMES: tuple[str, ...] = ("TE", "NEC", "LYM", "TAS")

#: The hard patch set's tissue: the demo's, with a colour cast and a stronger jitter per patch, and necrosis
#: stained like tumor-associated stroma (mean RGB (189.9, 126.4, 156.1) vs (190.4, 125.2, 157.1) on plain
#: stain, 16 patches of 224 px each; the default (0.065, 0.36) is (189.2, 128.9, 158.9)).
HARD_PATCH_PARAMS = dataclasses.replace(TextureParams(), stain_jitter=0.12, colour_cast=0.10, necrosis_he=(0.05, 0.39))

#: JPEG quality of the second lab's patches, as the MIL second lab's slide tiles.
LAB2_QUALITY = 70


def make_hard_patch_sets(out_dir: str | os.PathLike, *, n_train: int = 300, n_val: int = 60, n_test: int = 60,
                         size: int = 224, seed: int = 0, mpp: float = 1.0) -> dict[str, Path]:
    """Write ``out_dir/home`` (``training/``, ``val/``, ``test/``) and ``out_dir/lab2`` (``test/`` only).

    Args:
        out_dir: parent folder of both patch sets (see :func:`~monai_wsseg.synthetic.generator.make_patch_set`
            for their layout).
        n_train, n_val, n_test: patches per split of the home set; the second lab gets ``n_test`` test patches.
        size: patch side in pixels at ``mpp`` µm/px.
        seed: home seed; the second lab draws other patches (seed + 1) of the same tissue model, as the
            MIL second lab draws other slides.

    The second lab has no training or validation patches (its ``training/`` and ``val/`` folders are
    empty): the WSSS bundle's ``evaluate.json`` scores it with its default ``split`` ``test``.
    Existing files are kept, so a rerun after an interruption finishes the job.
    Returns ``{"home": home folder, "lab2": lab2 folder}``.
    """
    out = Path(out_dir)
    return {
        "home": make_patch_set(out / "home", n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                               params=HARD_PATCH_PARAMS, size=size, mpp=mpp, class_names=CLASS_NAMES),
        "lab2": make_patch_set(out / "lab2", n_train=0, n_val=0, n_test=n_test, seed=seed + 1,
                               params=second_lab(HARD_PATCH_PARAMS), quality=LAB2_QUALITY, size=size, mpp=mpp,
                               class_names=CLASS_NAMES),
    }


def _split_pixels(root: Path, split: str, window: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per patch: (H*W, 3) optical density (mean over ``window`` x ``window`` px) and (H*W,) mask indices."""
    feats, masks = [], []
    names = sorted((root / split / "img").glob("*.png"))
    if not names:
        raise FileNotFoundError(f"{root / split / 'img'}: no .png patches (colour_baseline needs {split}/img, "
                                f"{split}/mask)")
    for path in names:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), np.float64)
        with Image.open(root / split / "mask" / path.name) as im:
            masks.append(np.asarray(im).reshape(-1))
        od = -np.log10(np.clip(rgb, 1, 255) / 255.0)
        if window > 1:
            od = ndimage.uniform_filter(od, size=(window, window, 1), mode="reflect")
        feats.append(od.reshape(-1, 3))
    return feats, masks


def colour_baseline(root: str | os.PathLike, *, class_names: Sequence[str] = CLASS_NAMES, fit_split: str = "val",
                    score_split: str = "test", window: int = 1, max_fit_pixels: int = 200_000,
                    seed: int = 0) -> dict[str, object]:
    """How far colour alone segments a patch set: the bar a texture-reading model must clear.

    A Gaussian per class (mean and full covariance of the 3-channel optical density, with the class's pixel
    share as prior) is fitted on ``fit_split``'s masks; each pixel of ``score_split`` goes to the most
    likely class. ``window`` > 1 first averages the optical density over a ``window`` x ``window`` px
    neighbourhood (colour at a coarser grain, which smooths the nuclei out). Scores as the bundle's
    evaluation gives them (:class:`~monai_wsseg.metrics.tissue.TissueConfusion`, background index
    ``len(class_names)`` ignored).

    Args:
        root: a patch set folder (``<split>/img``, ``<split>/mask``).
        max_fit_pixels: pixels per class drawn (with ``seed``) to fit its Gaussian.

    Returns:
        ``{"iou": {class: IoU}, "miou", "fwiou", "acc", "window"}``; an IoU is NaN for a class absent from
        both truth and prediction.

    Raises:
        FileNotFoundError: a split folder without patches.
        ValueError: a class without pixels in ``fit_split``.
    """
    root = Path(root)
    k = len(class_names)
    feats, masks = _split_pixels(root, fit_split, window)
    x, y = np.concatenate(feats), np.concatenate(masks)
    rng = np.random.default_rng(seed)
    means, inv_covs, log_norms = [], [], []
    for c, name in enumerate(class_names):
        pix = x[y == c]
        if len(pix) < 10:
            raise ValueError(f"{root / fit_split}: class {name} has {len(pix)} pixels; cannot fit its colour")
        prior = len(pix) / max(1, int((y < k).sum()))
        if len(pix) > max_fit_pixels:
            pix = pix[rng.choice(len(pix), max_fit_pixels, replace=False)]
        cov = np.cov(pix, rowvar=False) + 1e-6 * np.eye(3)  # the ridge keeps a flat class invertible
        means.append(pix.mean(0))
        inv_covs.append(np.linalg.inv(cov))
        log_norms.append(np.log(prior) - 0.5 * np.linalg.slogdet(cov)[1])
    conf = TissueConfusion(k, ignore_index=k)
    for f, m in zip(*_split_pixels(root, score_split, window), strict=True):
        scores = [ln - 0.5 * np.einsum("ni,ij,nj->n", f - mu, ic, f - mu)
                  for mu, ic, ln in zip(means, inv_covs, log_norms, strict=True)]
        conf.update(np.argmax(np.stack(scores), axis=0), m)
    s = conf.scores()
    return {"iou": {name: float(v) for name, v in zip(class_names, s["iou"], strict=True)}, "miou": s["miou"],
            "fwiou": s["fwiou"], "acc": s["acc"], "window": window}
