#!/usr/bin/env python
r"""Cut BCSS regions of interest into a BCSS-WSSS style patch set (paper B's second dataset).

Input: an RGB image per ROI (``--images``) and a same-size one-channel label PNG of BCSS ground-truth codes
under the same file stem (``--masks``), as the BCSS download provides (``rgbs_colorNormalized/`` and
``masks/``, 0.25 µm/px). Output (``--out``): ``training/<roi>_<x>_<y>[abcd].png`` (multi-hot label of TUM STR
LYM NEC in the name), ``val/{img,mask}/``, ``test/{img,mask}/`` (palette masks, 4 = other / not scored) and
``splits.csv``. Splits are by ROI, never by patch. The class grouping of BCSS codes (``--class-codes``), the
don't-care codes (``--ignore-codes``) and the skipping rules (``--min-labelled``, ``--max-ignored``) are
described in :mod:`monai_wsseg.wsss.bcss`.

    python scripts/prepare_bcss_wsss.py --images BCSS/rgbs_colorNormalized --masks BCSS/masks \
        --out data/BCSS-WSSS --stride 224 --val-fraction 0.1 --test-fraction 0.15 --seed 0

Writes are atomic; a rerun keeps the patches that exist. Prints a JSON summary; bad input (a missing folder
or mask, bad codes, a mask of the wrong size) is refused with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.utils.cli import refuse
from monai_wsseg.wsss.bcss import DEFAULT_CLASS_CODES, DEFAULT_IGNORE_CODES, CutSettings, prepare_bcss, read_names


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (its options and their defaults)."""
    ap = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True, help="folder of ROI RGB images")
    ap.add_argument("--masks", type=Path, required=True, help="folder of ROI label PNGs (BCSS codes), same stems")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--patch-size", type=int, default=224)
    ap.add_argument("--stride", type=int, default=224, help="px between patch corners (< patch size: overlap)")
    ap.add_argument("--downsample", type=int, default=1,
                    help="integer reduction before cutting (2: 0.25 -> 0.5 µm/px)")
    ap.add_argument("--class-codes", default=DEFAULT_CLASS_CODES, help="NAME=codes;... in label order")
    ap.add_argument("--ignore-codes", default=DEFAULT_IGNORE_CODES, help="don't-care codes (outside ROI, exclude)")
    ap.add_argument("--min-labelled", type=float, default=0.5, help="min share of class pixels to keep a patch")
    ap.add_argument("--max-ignored", type=float, default=0.0, help="max share of don't-care pixels in a training patch")
    ap.add_argument("--min-class-fraction", type=float, default=0.0,
                    help="a class is 'present' when it covers at least this share of the patch (0: any pixel)")
    ap.add_argument("--val-rois", help="comma-separated ROI names or @file; overrides --val-fraction")
    ap.add_argument("--test-rois", help="comma-separated ROI names or @file; overrides --test-fraction")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--test-fraction", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: Sequence[str] | None = None) -> dict:
    """The summary of :func:`~monai_wsseg.wsss.bcss.prepare_bcss` (also printed as JSON)."""
    args = build_parser().parse_args(argv)
    try:
        settings = CutSettings(args.patch_size, args.stride, args.downsample, args.min_labelled, args.max_ignored,
                               args.min_class_fraction)
        summary = prepare_bcss(args.images, args.masks, args.out, settings, class_codes=args.class_codes,
                               ignore_codes=args.ignore_codes, val_rois=read_names(args.val_rois),
                               test_rois=read_names(args.test_rois), val_fraction=args.val_fraction,
                               test_fraction=args.test_fraction, seed=args.seed)
    except (OSError, ValueError) as exc:
        refuse(exc)
    print(json.dumps(summary, indent=1, default=int))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    main()
