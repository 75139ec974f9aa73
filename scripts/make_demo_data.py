#!/usr/bin/env python
"""Write the demo data: a synthetic slide cohort (MIL) and a synthetic patch set (WSSS).

    python scripts/make_demo_data.py                 # -> <project>/demo/{cohort,patches}
    python scripts/make_demo_data.py --out /tmp/demo --size 4096 --patches 100
    python scripts/make_demo_data.py --hard          # + <project>/demo/hard/{home,lab2,patches}: stability data

Reruns keep every file that already exists, so an interrupted run resumes where it stopped.
The summary reads the written files back (tissue = the paper's "not all of R, G, B > 220" rule on
the slide's 1/16 level; tumor = the expert mask), so it also checks what was written.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from monai_wsseg.synthetic import make_hard_cohorts, make_hard_patch_sets
from monai_wsseg.synthetic.generator import make_cohort, make_patch_set, parse_patch_label

ROOT = Path(__file__).resolve().parents[1]

CLASS_NAMES = ("TE", "NEC", "LYM", "TAS")


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"size must be N or WxH, got {text!r}")
    w = int(m.group(1))
    return w, int(m.group(2) or w)


def _slide_fractions(slide: Path, mask: Path | None) -> tuple[float, float]:
    """(tissue share of the slide, tumor share of the tissue) from the files on disk."""
    with tifffile.TiffFile(slide) as tf:
        width = tf.pages[0].imagewidth
        page = min(tf.pages, key=lambda p: abs(width / p.imagewidth - 16))  # level nearest 1/16
        rgb = page.asarray()
    tissue = ~np.all(rgb > 220, axis=-1)
    if mask is None:
        return float(tissue.mean()), 0.0
    tumor = np.asarray(Image.open(mask)) > 127
    if tumor.shape != tissue.shape:
        tissue = np.asarray(Image.fromarray(tissue).resize(tumor.shape[::-1], Image.NEAREST))
    return float(tissue.mean()), float((tumor & tissue).sum() / max(1, tissue.sum()))


def summarise_cohort(manifest: Path) -> None:
    """Print slide counts and tissue / tumor area shares per split and label of the cohort in ``manifest``."""
    rows = list(csv.DictReader(open(manifest, newline="")))
    print(f"\nCohort {manifest.parent}  ({len(rows)} slides)")
    print(f"{'split':<6} {'label':<7} {'slides':>6} {'tissue %':>9} {'tumor % of tissue':>18}")
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        mask = manifest.parent / row["mask"] if row["mask"] else None
        fr = _slide_fractions(manifest.parent / row["slide"], mask)
        label = {"1": "tumor", "0": "normal"}.get(row["label"], row["label"])
        groups.setdefault((row["split"], label), []).append(fr)
    order = {"train": 0, "val": 1, "test": 2}
    for (split, label), frs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0])):
        t = np.array(frs) * 100
        print(f"{split:<6} {label:<7} {len(frs):>6} {t[:, 0].mean():>8.1f}% {t[:, 1].mean():>17.1f}%")


def summarise_patches(root: Path) -> None:
    """Print per split how many patches hold each class, and the mask pixel share of each class."""
    print(f"\nPatch set {root}")
    header = "  ".join(f"{c:>5}" for c in CLASS_NAMES)
    print(f"{'split':<9} {'patches':>7}  {header}   (patches with the class)")
    folders = (("training", root / "training"), ("val", root / "val" / "img"), ("test", root / "test" / "img"))
    for split, folder in folders:
        files = sorted(folder.glob("*.png"))
        counts = Counter()
        for f in files:
            for c, bit in zip(CLASS_NAMES, parse_patch_label(f.name), strict=True):
                counts[c] += bit
        print(f"{split:<9} {len(files):>7}  " + "  ".join(f"{counts[c]:>5}" for c in CLASS_NAMES))
    pix = np.zeros(len(CLASS_NAMES) + 1, np.int64)
    for f in sorted((root / "val" / "mask").glob("*.png")) + sorted((root / "test" / "mask").glob("*.png")):
        pix += np.bincount(np.asarray(Image.open(f)).ravel(), minlength=pix.size)[: pix.size]
    share = pix / max(1, pix.sum()) * 100
    names = (*CLASS_NAMES, "background")
    print("val+test mask pixels: " + ", ".join(f"{n} {s:.1f}%" for n, s in zip(names, share, strict=True)))


def main(argv: list[str] | None = None) -> int:
    """Make the demo data under ``--out`` (``argv``: the options; default ``sys.argv[1:]``); returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "demo", help="output folder (default: <project>/demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=_size, default=(8192, 8192),
                    help="slide size in level-0 px: N or WxH (default 8192)")
    ap.add_argument("--mpp", type=float, default=0.5, help="slide microns per pixel (default 0.5)")
    ap.add_argument("--n-tumor", type=int, default=6)
    ap.add_argument("--n-normal", type=int, default=6)
    ap.add_argument("--patches", type=int, default=300, help="training patches; val and test get N/5 each")
    ap.add_argument("--patch-size", type=int, default=224)
    ap.add_argument("--patch-mpp", type=float, default=1.0)
    ap.add_argument("--hard", action="store_true",
                    help="also write the hard cohort and its second lab (demo/hard/home, demo/hard/lab2; "
                         "4096 px slides, see monai_wsseg.synthetic.hard) and the hard patch sets "
                         "(demo/hard/patches/{home,lab2}, see monai_wsseg.synthetic.hard_patches)")
    args = ap.parse_args(argv)
    if args.patches < 0 or args.n_tumor < 0 or args.n_normal < 0:
        ap.error("counts must be >= 0")
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    manifest = make_cohort(args.out / "cohort", n_tumor=args.n_tumor, n_normal=args.n_normal, size=args.size,
                           seed=args.seed, mpp=args.mpp)
    t1 = time.perf_counter()
    n_eval = max(1, args.patches // 5) if args.patches else 0
    patches = make_patch_set(args.out / "patches", n_train=args.patches, n_val=n_eval, n_test=n_eval,
                             size=args.patch_size, seed=args.seed, mpp=args.patch_mpp, class_names=CLASS_NAMES)
    hard = make_hard_cohorts(args.out / "hard", seed=args.seed) if args.hard else {}
    hard_patches = make_hard_patch_sets(args.out / "hard" / "patches", seed=args.seed) if args.hard else {}
    t2 = time.perf_counter()
    summarise_cohort(manifest)
    for found in hard.values():
        summarise_cohort(found)
    for root in (patches, *hard_patches.values()):
        summarise_patches(root)
    print(f"\nTime: cohort {t1 - t0:.1f} s, patches {t2 - t1:.1f} s, total {t2 - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
