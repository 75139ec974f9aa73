"""Cut BCSS regions of interest into a BCSS-WSSS style patch set (paper B's second dataset).

Input: BCSS ROIs, an RGB image per ROI and a same-size one-channel label PNG of BCSS ground-truth codes under
the same file stem, as the BCSS download provides (``rgbs_colorNormalized/`` and ``masks/``, 0.25 µm/px).
Output (:func:`prepare_bcss`)::

    training/<roi>_<x>_<y>[abcd].png    patch, multi-hot label of the classes present (TUM STR LYM NEC)
    val/img/<roi>_<x>_<y>[abcd].png     held-out ROIs: patch ...
    val/mask/<roi>_<x>_<y>[abcd].png    ... and its palette mask (index = class, 4 = other / not scored;
                                        colours: monai_wsseg.io.palettes.PALETTES["bcss"])
    test/img, test/mask                 the same for the test ROIs
    splits.csv                          roi,split: which ROI went where

``x, y`` are the patch's top-left corner in the ROI's own pixels (before downsampling). Splits are by ROI,
never by patch: neighbouring patches of one ROI are alike and would leak into the evaluation (BCSS has one ROI
per slide, so this is also a split by patient).

Class mapping (default ``TUM=1,19,20;STR=2;LYM=3,10,11;NEC=4``). The paper says only that BCSS has five
classes, TUM, STR, LYM, NEC and "other" (OTR), and that the one-hot vectors come from the masks. BCSS's own
codes (meta/gtruth_codes.tsv) are finer; they are grouped as the BCSS authors group them into their main
classes: tumour = tumor (1) + angioinvasion (19) + DCIS (20); stroma = stroma (2); lymphocytes / inflammatory
= lymphocytic_infiltrate (3) + plasma_cells (10) + other_immune_infiltrate (11); necrosis =
necrosis_or_debris (4). Every other code (fat, blood, glands, mucus, vessels, nerve, ...) is OTR: it never
sets a label bit, and it is index 4 (not scored) in the val/test masks. Ignored codes (default 0 =
outside_roi, 7 = exclude) are "don't care": BCSS says zero is *not* an "other" class. A training patch with
more than ``max_ignored`` of them is skipped, because tissue there is unannotated and could hold a class its
label would miss. A patch whose pixels are less than ``min_labelled`` TUM/STR/LYM/NEC is dropped (mostly
other/unlabelled: its label says little and, BCSS having no background class, its pseudo mask would force
"other" tissue into one of the four classes).

Writes are atomic; a rerun keeps the patches that exist. ``scripts/prepare_bcss_wsss.py`` is the command line.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from monai_wsseg.io.palettes import BCSS_CLASSES, PALETTES, WHITE, class_palette, write_palette_mask
from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.wsss.patches import read_index_mask, read_rgb, write_rgb_png

__all__ = ["DEFAULT_CLASS_CODES", "DEFAULT_IGNORE_CODES", "IMAGE_SUFFIXES", "CutSettings", "assign_splits",
           "code_lut", "cut_roi", "find_rois", "load_roi", "parse_class_codes", "parse_codes", "patch_positions",
           "prepare_bcss", "read_names"]

logger = logging.getLogger("prepare_bcss_wsss")

DEFAULT_CLASS_CODES = "TUM=1,19,20;STR=2;LYM=3,10,11;NEC=4"
DEFAULT_IGNORE_CODES = "0,7"
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass(frozen=True)
class CutSettings:
    """How ROIs are cut into patches.

    Attributes:
        patch_size: patch side, px (after downsampling), >= 8.
        stride: px between patch corners (< patch size: overlap), >= 1.
        downsample: integer reduction before cutting (2: 0.25 -> 0.5 µm/px), >= 1.
        min_labelled: least share of class pixels (TUM/STR/LYM/NEC) to keep a patch, in [0, 1].
        max_ignored: largest share of don't-care pixels in a training patch, in [0, 1].
        min_class_fraction: a class is "present" when it covers at least this share of the patch (0: any
            pixel), in [0, 1].

    Raises:
        ValueError: a setting out of range, named as its command-line option.
    """

    patch_size: int = 224
    stride: int = 224
    downsample: int = 1
    min_labelled: float = 0.5
    max_ignored: float = 0.0
    min_class_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.patch_size < 8 or self.stride < 1 or self.downsample < 1:
            raise ValueError("--patch-size must be >= 8, --stride and --downsample >= 1")
        for name in ("min_labelled", "max_ignored", "min_class_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1]")


def parse_class_codes(text: str) -> dict[str, list[int]]:
    """``"TUM=1,19,20;STR=2;..."`` -> ``{"TUM": [1, 19, 20], "STR": [2], ...}`` (order = label order)."""
    out: dict[str, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, codes = part.partition("=")
        name = name.strip()
        try:
            values = [int(c) for c in codes.split(",") if c.strip()]
        except ValueError:
            values = []
        if not sep or not name or not values or any(not 0 <= v <= 255 for v in values):
            raise ValueError(f"--class-codes: expected NAME=code[,code...] parts separated by ';', got {part!r}")
        if name in out:
            raise ValueError(f"--class-codes: class {name!r} given twice")
        out[name] = values
    if not out:
        raise ValueError("--class-codes: no classes given")
    seen: dict[int, str] = {}
    for name, values in out.items():
        for v in values:
            if v in seen:
                raise ValueError(f"--class-codes: code {v} mapped to both {seen[v]} and {name}")
            seen[v] = name
    return out


def parse_codes(text: str) -> list[int]:
    """``"0,7"`` -> ``[0, 7]``."""
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integer codes, got {text!r}") from None


def code_lut(class_codes: dict[str, list[int]], ignore_codes: list[int]) -> np.ndarray:
    """256-entry table BCSS code -> class index (0..C-1), C (other) or C + 1 (don't care)."""
    n = len(class_codes)
    lut = np.full(256, n, np.uint8)
    for i, codes in enumerate(class_codes.values()):
        lut[codes] = i
    for c in ignore_codes:
        if lut[c] != n:
            raise ValueError(f"--ignore-codes: code {c} is also a class code")
        lut[c] = n + 1
    return lut


def read_names(text: str | None) -> list[str] | None:
    """Comma-separated ROI names, or ``@file`` with one name per line; ``None`` stays ``None``."""
    if text is None:
        return None
    if text.startswith("@"):
        lines = Path(text[1:]).read_text().splitlines()
        return [s.strip() for s in lines if s.strip()]
    return [s.strip() for s in text.split(",") if s.strip()]


def find_rois(images: Path, masks: Path) -> list[tuple[str, Path, Path]]:
    """(roi name, image path, mask path) for every image with a mask of the same stem."""
    for folder, what in ((images, "--images"), (masks, "--masks")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {what} folder does not exist")
    imgs = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    msks = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not imgs:
        raise FileNotFoundError(f"{images}: no ROI images ({', '.join(IMAGE_SUFFIXES)})")
    no_mask = sorted(set(imgs) - set(msks))
    if no_mask:
        raise FileNotFoundError(f"{masks}: no label mask for {len(no_mask)} ROI image(s), e.g. {no_mask[:5]}")
    return [(stem, imgs[stem], msks[stem]) for stem in sorted(imgs)]


def assign_splits(rois: list[str], val: list[str] | None, test: list[str] | None, val_fraction: float,
                  test_fraction: float, seed: int) -> dict[str, str]:
    """ROI -> "training" | "val" | "test": named lists win; otherwise seeded random fractions of the ROIs."""
    split = {r: "training" for r in rois}
    for names, which, flag in ((val, "val", "--val-rois"), (test, "test", "--test-rois")):
        if names is None:
            continue
        unknown = sorted(set(names) - set(rois))
        if unknown:
            raise ValueError(f"{flag}: unknown ROI(s) {unknown[:5]} (known e.g. {rois[:3]})")
        for r in names:
            if split[r] != "training":
                raise ValueError(f"{flag}: ROI {r} is already in the {split[r]} split")
            split[r] = which
    free = [r for r in rois if split[r] == "training"]
    order = [free[i] for i in np.random.default_rng(seed).permutation(len(free))]
    for names, which, frac in ((val, "val", val_fraction), (test, "test", test_fraction)):
        if names is not None or frac <= 0:
            continue
        if not 0 < frac < 1:
            raise ValueError(f"--{which}-fraction must be in [0, 1), got {frac}")
        k = max(1, round(frac * len(rois))) if len(rois) >= 3 else 0
        for r in order[:k]:
            split[r] = which
        order = order[k:]
    return split


def patch_positions(width: int, height: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of the full ``size`` px patches on a ``stride`` grid, row by row."""
    return [(x, y) for y in range(0, height - size + 1, stride) for x in range(0, width - size + 1, stride)]


def load_roi(image_path: Path, mask_path: Path, downsample: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) uint8 code map, both reduced ``downsample`` times."""
    rgb = read_rgb(image_path)
    codes = read_index_mask(mask_path)
    if codes.shape != rgb.shape[:2]:
        raise ValueError(f"{mask_path}: label mask is {codes.shape[1]}x{codes.shape[0]} px, but "
                         f"{image_path.name} is {rgb.shape[1]}x{rgb.shape[0]} px")
    if downsample > 1:
        h, w = (codes.shape[0] // downsample) * downsample, (codes.shape[1] // downsample) * downsample
        # box filter for the image (area average), centre sample for the codes (never invents a code)
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb[:h, :w])).reduce(downsample))
        codes = codes[downsample // 2 : h : downsample, downsample // 2 : w : downsample]
    return rgb, codes


def cut_roi(roi: str, rgb: np.ndarray, idx: np.ndarray, split: str, out: Path, class_names: list[str],
            palette: list, settings: CutSettings) -> Counter:
    """Write the patches of one ROI; returns counts of what was written and skipped.

    Args:
        rgb: (H, W, 3) uint8 image.
        idx: (H, W) class index map (0..C-1 a class, C = other, C + 1 = don't care).
        split: ``"training"``, ``"val"`` or ``"test"``.
    """
    n = len(class_names)
    size, f = settings.patch_size, settings.downsample
    stats: Counter = Counter()
    for x, y in patch_positions(idx.shape[1], idx.shape[0], size, settings.stride):
        crop = idx[y : y + size, x : x + size]
        counts = np.bincount(crop.ravel(), minlength=n + 2)
        total = crop.size
        if counts[:n].sum() < settings.min_labelled * total:
            stats["skipped_unlabelled"] += 1
            continue
        if split == "training" and counts[n + 1] > settings.max_ignored * total:
            stats["skipped_dont_care"] += 1
            continue
        present = counts[:n] >= max(1, settings.min_class_fraction * total)
        name = f"{roi}_{x * f}_{y * f}[{''.join('1' if p else '0' for p in present)}].png"
        image = rgb[y : y + size, x : x + size]
        if split == "training":
            target = out / "training" / name
            if not target.exists():
                write_rgb_png(target, image)
        else:
            img_t, mask_t = out / split / "img" / name, out / split / "mask" / name
            if not (img_t.exists() and mask_t.exists()):
                # other and don't-care pixels are both "not scored" in the evaluation masks
                write_palette_mask(mask_t, np.minimum(crop, n), palette)
                write_rgb_png(img_t, image)  # image last: an image never exists without its mask
        stats[f"{split}_patches"] += 1
        for c in np.flatnonzero(present):
            stats[f"{split}_{class_names[c]}"] += 1
    return stats


def prepare_bcss(images: Path, masks: Path, out: Path, settings: CutSettings = CutSettings(), *,
                 class_codes: str = DEFAULT_CLASS_CODES, ignore_codes: str = DEFAULT_IGNORE_CODES,
                 val_rois: list[str] | None = None, test_rois: list[str] | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.15, seed: int = 0, progress: bool = True) -> dict:
    """Cut every ROI of ``images`` / ``masks`` into the patch set ``out`` (see the module docstring).

    Args:
        class_codes: ``"NAME=code[,code...];..."`` in label order.
        ignore_codes: comma-separated don't-care codes.
        val_rois, test_rois: ROI names of those splits (they win over the fractions).
        val_fraction, test_fraction: seeded random shares of the ROIs otherwise.

    Returns:
        a summary: ``classes``, ``rois`` (count per split) and counts of patches written and skipped.

    Raises:
        FileNotFoundError: a folder, or a ROI's mask, is missing.
        ValueError: bad codes or splits, or a mask whose size differs from its image's.
    """
    codes = parse_class_codes(class_codes)
    lut = code_lut(codes, parse_codes(ignore_codes))
    class_names = list(codes)
    # index C = other / not scored; the standard BCSS-WSSS colours when the classes are the standard ones
    palette = PALETTES["bcss"] if tuple(class_names) == BCSS_CLASSES else class_palette(class_names, WHITE)
    Image.MAX_IMAGE_PIXELS = None  # BCSS ROIs reach ~10^8 px; they are trusted inputs, not decompression bombs

    rois = find_rois(images, masks)
    split_of = assign_splits([r for r, _, _ in rois], val_rois, test_rois, val_fraction, test_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    stats: Counter = Counter()
    for roi, image_path, mask_path in tqdm(rois, desc="BCSS ROIs", unit="roi", disable=not progress):
        rgb, roi_codes = load_roi(image_path, mask_path, settings.downsample)
        if min(roi_codes.shape) < settings.patch_size:
            logger.warning("%s: %dx%d px after downsampling, smaller than one patch; skipped",
                           roi, roi_codes.shape[1], roi_codes.shape[0])
            stats["rois_too_small"] += 1
            continue
        stats += cut_roi(roi, rgb, lut[roi_codes], split_of[roi], out, class_names, palette, settings)

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["roi", "split"])
    writer.writerows(sorted(split_of.items()))
    write_text_atomically(out / "splits.csv", buf.getvalue())
    return {"classes": class_names, "rois": Counter(split_of.values()), **stats}
