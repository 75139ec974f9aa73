"""Synthetic whole-slide images, cohorts and patch sets with exact ground truth.

Pixels come from the procedural texture engine in :mod:`monai_wsseg.synthetic.texture`; this module
turns them into the files the bundles read: pyramidal TIFF slides with expert masks, a cohort
manifest, and a LUAD-HistoSeg style patch set. Coordinates are (x, y) level-0 pixels; sizes in
microns are converted with the slide's microns per pixel (mpp).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from monai_wsseg.io.palettes import WHITE, class_palette, write_palette_mask
from monai_wsseg.io.png import save_png
from monai_wsseg.synthetic.fields import mix_int
from monai_wsseg.synthetic.layouts import PatchLayout, SlideLayout
from monai_wsseg.synthetic.nuclei import populations
from monai_wsseg.synthetic.params import GLASS, PATCH_CLASS_KINDS, TISSUE_KINDS, TUMOR, TextureParams
from monai_wsseg.synthetic.stains import NoiseBank, Stain, kind_tables
from monai_wsseg.synthetic.texture import BLOCK, render_block, slide_key
from monai_wsseg.utils.atomic import write_text_atomically

__all__ = [
    "RenderedSlide",
    "SyntheticSlide",
    "make_cohort",
    "make_patch_set",
    "make_slide",
    "parse_patch_label",
    "render_slide",
    "render_texture",
]


@dataclass
class RenderedSlide:
    """An in-memory synthetic slide.

    image: (H, W, 3) uint8 RGB level 0 at ``mpp`` µm/px. tumor_mask: (ceil(H/d), ceil(W/d))
    uint8 with d = ``mask_downsample``, 255 where the centre of the d x d cell is tumor.
    kinds: same shape, tissue kind code per cell (see :data:`TISSUE_KINDS`; glands are small
    objects drawn inside stroma and count as stroma here). Fractions are over these cells:
    tissue of the whole grid, tumor of the tissue.
    """

    image: np.ndarray
    tumor_mask: np.ndarray
    kinds: np.ndarray
    mpp: float
    mask_downsample: int
    tissue_fraction: float
    tumor_fraction: float


def _validate_common(name: str, mpp: float, params) -> TextureParams:
    if not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"{name}: mpp must be a positive number of microns per pixel, got {mpp!r}")
    if params is None:
        return TextureParams()
    if not isinstance(params, TextureParams):
        raise ValueError(f"{name}: params must be a TextureParams, got {type(params).__name__}")
    return params


def _slide_layout(width, height, tumor, seed, mpp, params, tumor_fraction, name):
    p = _validate_common(name, mpp, params)
    ints = isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer))
    if not (ints and width >= 64 and height >= 64):
        raise ValueError(f"{name}: width and height must be integers >= 64 px, got {width} x {height}")
    lo, hi = tumor_fraction
    if not 0 < lo <= hi < 1:
        raise ValueError(f"{name}: tumor_fraction must be (lo, hi) with 0 < lo <= hi < 1, got {tumor_fraction}")
    key = slide_key(seed)
    rng = np.random.default_rng([int(seed), 1])
    layout = SlideLayout(int(width), int(height), float(mpp), bool(tumor), rng, p, (lo, hi), key)
    return layout, p, rng


def _lowres_kinds(layout: SlideLayout, d: int) -> np.ndarray:
    yy, xx = np.mgrid[0 : math.ceil(layout.height / d), 0 : math.ceil(layout.width / d)]
    return layout.kinds_at(xx * d + (d - 1) / 2, yy * d + (d - 1) / 2)


def render_slide(width: int, height: int, *, tumor: bool, seed: int, mpp: float = 0.5,
                 params: TextureParams | None = None, tumor_fraction: tuple[float, float] = (0.1, 0.4),
                 mask_downsample: int = 16, workers: int | None = None) -> RenderedSlide:
    """Render a synthetic slide of ``width`` x ``height`` level-0 pixels at ``mpp`` µm/px in memory.

    Deterministic in ``seed`` (independent of ``workers``). ``tumor_fraction`` bounds the share of
    tissue drawn as tumor on tumor slides; normal slides have none but do have lymphoid aggregates.
    Masks and kind maps are sampled at the centre of each ``mask_downsample``-pixel cell, so they
    are ceil(H / d) x ceil(W / d).
    """
    name = "render_slide"
    if not (isinstance(mask_downsample, int) and mask_downsample >= 1):
        raise ValueError(f"{name}: mask_downsample must be a positive integer, got {mask_downsample!r}")
    layout, p, rng = _slide_layout(width, height, tumor, seed, mpp, params, tumor_fraction, name)
    stain = Stain(p, rng)
    bank = NoiseBank(rng, mpp)
    tables, pops = kind_tables(p), populations(p)
    image = np.empty((height, width, 3), np.uint8)
    jobs = [(x0, y0) for y0 in range(0, height, BLOCK) for x0 in range(0, width, BLOCK)]

    def job(xy):
        x0, y0 = xy
        w, h = min(BLOCK, width - x0), min(BLOCK, height - y0)
        render_block(layout, stain, bank, tables, pops, x0, y0, w, h, image[y0 : y0 + h, x0 : x0 + w])

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(job, jobs))
    _focus_blur(image, p, mpp)  # over the whole image, so blocks leave no seams
    kinds = _lowres_kinds(layout, mask_downsample)
    tissue = kinds != GLASS
    tumor_px = kinds == TUMOR
    return RenderedSlide(image=image, tumor_mask=np.where(tumor_px, 255, 0).astype(np.uint8), kinds=kinds,
                         mpp=float(mpp), mask_downsample=mask_downsample,
                         tissue_fraction=float(tissue.mean()),
                         tumor_fraction=float(tumor_px.sum() / max(1, tissue.sum())))


def render_texture(kind: str, size: int = 256, *, seed: int = 0, mpp: float = 0.5,
                   params: TextureParams | None = None) -> np.ndarray:
    """A (size, size, 3) uint8 RGB tile of one tissue kind at ``mpp`` µm/px, with its own random
    stain (as if from another slide). ``kind`` is a name from :data:`TISSUE_KINDS` except "gland"."""
    if not (isinstance(size, (int, np.integer)) and 16 <= size <= 8192):
        raise ValueError(f"render_texture: size must be an integer in 16..8192 px, got {size!r}")
    if kind not in TISSUE_KINDS or kind == "gland":
        kinds = [k for k in TISSUE_KINDS if k != "gland"]
        raise ValueError(f"render_texture: kind must be one of {kinds}, got {kind!r}")
    return _render_patch([TISSUE_KINDS.index(kind)], size, mpp, _validate_common("render_texture", mpp, params),
                         np.random.default_rng([int(seed), 2]), slide_key(seed))[0]


def _render_patch(kinds: Sequence[int], size: int, mpp: float, p: TextureParams, rng: np.random.Generator,
                  key: int, layout: PatchLayout | None = None) -> tuple[np.ndarray, np.ndarray]:
    layout = layout or PatchLayout(size, mpp, kinds, rng, p, key)
    out = np.empty((size, size, 3), np.uint8)
    kmap = render_block(layout, Stain(p, rng), NoiseBank(rng, mpp, size=size),
                        kind_tables(p), populations(p), 0, 0, size, size, out)
    _focus_blur(out, p, mpp)
    return out, kmap


def _focus_blur(image: np.ndarray, p: TextureParams, mpp: float) -> None:
    """The scanner's focus blur (``p.blur_um`` µm Gaussian sigma), in place on (H, W, 3) uint8; none by default."""
    if p.blur_um > 0:
        for c in range(3):
            image[..., c] = ndimage.gaussian_filter(image[..., c], p.blur_um / mpp, mode="reflect")


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 after JPEG compression at ``quality``: a lab that stores its scans as JPEG."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


# ------------------------------------------------------------------------------------- file output
@dataclass
class SyntheticSlide:
    """Files and statistics of one written synthetic slide (fractions measured on the mask grid)."""

    image_path: Path
    mask_path: Path | None
    width: int
    height: int
    mpp: float
    tumor: bool
    tissue_fraction: float
    tumor_fraction: float


def make_slide(path: str | os.PathLike, width: int, height: int, *, tumor: bool, seed: int, mpp: float = 0.5,
               params: TextureParams | None = None, tumor_fraction: tuple[float, float] = (0.1, 0.4),
               mask_path: str | os.PathLike | None = None, mask_downsample: int = 16,
               quality: int = 90) -> SyntheticSlide:
    """Render one slide and write it as a JPEG pyramidal TIFF (>= 3 levels from 2048 px up).

    For tumor slides also writes the expert mask: a one-channel PNG (0 non-tumor, 255 tumor) of
    size ceil(W / mask_downsample) x ceil(H / mask_downsample) -- rounding *up*, the last cell
    covering the image's ragged edge; each mask pixel is the tissue kind at the centre of its
    d x d cell of level 0. ``mask_path`` defaults to ``<stem>_mask.png`` beside the slide.
    Returns the paths, the tissue fraction of the slide area and the tumor fraction of the tissue.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"{path}: slide path must end in .tif or .tiff")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: output folder {path.parent} does not exist")
    # imported here: the wsi package imports MONAI (seconds), which rendering does not need
    from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff

    r = render_slide(width, height, tumor=tumor, seed=seed, mpp=mpp, params=params,
                     tumor_fraction=tumor_fraction, mask_downsample=mask_downsample)
    write_pyramidal_tiff(path, r.image, mpp, compression="jpeg", quality=quality)
    mpath = None
    if tumor:
        mpath = Path(mask_path) if mask_path is not None else path.with_name(path.stem + "_mask.png")
        save_png(mpath, Image.fromarray(r.tumor_mask, mode="L"))
    return SyntheticSlide(path, mpath, width, height, float(mpp), bool(tumor), r.tissue_fraction, r.tumor_fraction)


def _assign_splits(n: int, splits, rng: np.random.Generator) -> list[str]:
    if splits is None:
        splits = {"train": 0.7, "val": 0.15, "test": 0.15}
    n_val = max(1, round(n * splits.get("val", 0))) if n >= 3 and splits.get("val", 0) > 0 else 0
    n_test = max(1, round(n * splits.get("test", 0))) if n >= 3 and splits.get("test", 0) > 0 else 0
    names = ["val"] * n_val + ["test"] * n_test
    names = ["train"] * (n - len(names)) + names
    return [names[i] for i in rng.permutation(n)]


def make_cohort(out_dir: str | os.PathLike, *, n_tumor: int = 6, n_normal: int = 6,
                size: tuple[int, int] = (8192, 8192), seed: int = 0, mpp: float = 0.5,
                params: TextureParams | None = None, splits: Mapping[str, float] | Sequence[str] | None = None,
                location: str = "synthetic", quality: int = 90, prefix: str = "synth") -> Path:
    """Write a cohort of synthetic slides and return the path of its ``manifest.csv``.

    Layout: ``out_dir/slides/synth-XXXX-{tumor,normal}.tif``, ``out_dir/masks/synth-XXXX-tumor.png``
    (tumor slides only, 1/16 of level 0, see :func:`make_slide`) and ``out_dir/manifest.csv`` with
    columns ``slide,label,split,mask,case,location`` (paths relative to the CSV; ``label`` is
    1 (tumor) or 0 (normal), as :func:`~monai_wsseg.datasets.manifest.load_manifest` expects; ``mask``
    empty for normal slides; one case per slide).
    ``size`` is (width, height) in level-0 pixels at ``mpp`` µm/px. ``splits`` is either fractions
    per split (default train 0.7 / val 0.15 / test 0.15, assigned per label so both labels are in
    every split) or one split name per slide, tumor slides first. Slides whose files exist are kept.
    ``quality`` is the JPEG quality of the slide tiles; ``prefix`` starts every file and case name.
    """
    out = Path(out_dir)
    if n_tumor < 0 or n_normal < 0 or n_tumor + n_normal == 0:
        raise ValueError(f"make_cohort({out}): need n_tumor, n_normal >= 0 and at least one slide")
    if len(size) != 2 or min(size) < 64:
        raise ValueError(f"make_cohort({out}): size must be (width, height) >= 64 px, got {size}")
    _validate_common(f"make_cohort({out})", mpp, params)
    labels = ["tumor"] * n_tumor + ["normal"] * n_normal
    rng = np.random.default_rng([int(seed), 3])
    if splits is None or isinstance(splits, Mapping):
        split_of = _assign_splits(n_tumor, splits, rng) + _assign_splits(n_normal, splits, rng)
    else:
        split_of = [str(s) for s in splits]
        if len(split_of) != len(labels):
            raise ValueError(f"make_cohort({out}): {len(split_of)} split names for {len(labels)} slides")
    (out / "slides").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, label in enumerate(tqdm(labels, desc="synthetic slides", unit="slide")):
        name = f"{prefix}-{i:04d}-{label}"
        slide, mask = out / "slides" / f"{name}.tif", out / "masks" / f"{name}.png"
        if not (slide.exists() and (label == "normal" or mask.exists())):
            make_slide(slide, size[0], size[1], tumor=label == "tumor", seed=int(seed) * 100_003 + i, mpp=mpp,
                       params=params, mask_path=mask, quality=quality)
        rows.append(dict(slide=f"slides/{slide.name}", label=int(label == "tumor"), split=split_of[i],
                         mask=f"masks/{mask.name}" if label == "tumor" else "", case=f"{prefix}-{i:04d}",
                         location=location))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["slide", "label", "split", "mask", "case", "location"])
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomically(out / "manifest.csv", text.getvalue())


# ------------------------------------------------------------------------------------ patch sets
def parse_patch_label(name: str) -> list[int]:
    """Multi-hot label from a LUAD-HistoSeg style file name, e.g. ``x[1 0 1 0].png`` -> [1, 0, 1, 0]."""
    lo, hi = name.rfind("["), name.rfind("]")
    if lo < 0 or hi < lo:
        raise ValueError(f"{name}: no [..] label in the file name")
    body = name[lo + 1 : hi]
    bits = body.split() if " " in body else list(body)
    if not bits or any(b not in "01" for b in bits):
        raise ValueError(f"{name}: label must be 0/1 digits, got [{body}]")
    return [int(b) for b in bits]


def _patch_layout(i: int, split: int, seed: int, n_cls: int, cls_kinds: list[int], size: int, mpp: float,
                  p: TextureParams) -> tuple[PatchLayout, np.ndarray, np.random.Generator, int]:
    rng = np.random.default_rng([int(seed), 4, split, i])
    key = mix_int(slide_key(seed) ^ (split << 40) ^ i)
    k = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    chosen = sorted(rng.choice(n_cls, size=min(k, n_cls), replace=False).tolist())
    regions = chosen + ([n_cls] if rng.random() < 0.25 else [])
    kinds = [cls_kinds[c] if c < n_cls else GLASS for c in regions]
    for _ in range(50):  # redraw the partition until every region is clearly visible
        layout = PatchLayout(size, mpp, kinds, rng, p, key)
        kmap = layout.kinds_dense(0, 0, size, size)[0]
        share = np.array([(kmap == kd).mean() for kd in kinds])
        if share.min() >= 0.08:
            break
    idx = np.full(kmap.shape, n_cls, np.uint8)
    for c in chosen:
        idx[kmap == cls_kinds[c]] = c
    return layout, idx, rng, key


def make_patch_set(out_dir: str | os.PathLike, *, n_train: int = 200, n_val: int = 40, n_test: int = 40,
                   size: int = 224, seed: int = 0, mpp: float = 1.0,
                   class_names: Sequence[str] = ("TE", "NEC", "LYM", "TAS"),
                   params: TextureParams | None = None, quality: int | None = None) -> Path:
    """Write a LUAD-HistoSeg style patch set of ``size`` x ``size`` px patches at ``mpp`` µm/px.

    ``training/train_XXXXX[a b c d].png`` carry the multi-hot label (classes present, in
    ``class_names`` order) in the name; ``val/img``, ``val/mask``, ``test/img``, ``test/mask`` hold
    images and their exact palette masks under the same name (``val_XXXXX[a b c d].png``, label
    included for convenience); masks are "P" mode, index = class, background glass =
    ``len(class_names)`` (white). Each patch is a
    warped-Voronoi mosaic of 1-3 classes, sometimes with glass, in its own stain (``params.stain_jitter``,
    ``params.colour_cast`` and ``params.blur_um`` act per patch). ``quality``: when set, every image goes
    through JPEG compression at that quality before it is written (still as PNG), as a lab storing JPEG
    scans would give it. Existing files are kept. Returns ``out_dir``.
    """
    out = Path(out_dir)
    p = _validate_common(f"make_patch_set({out})", mpp, params)
    names = list(class_names)
    unknown = [c for c in names if c not in PATCH_CLASS_KINDS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"make_patch_set({out}): class_names must be distinct names from "
                         f"{sorted(PATCH_CLASS_KINDS)}, got {names}")
    cls_kinds = [PATCH_CLASS_KINDS[c] for c in names]
    if len(set(cls_kinds)) != len(cls_kinds):
        raise ValueError(f"make_patch_set({out}): class_names {names} map two classes to one texture")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"make_patch_set({out}): quality must be None or a JPEG quality in 1..100, got {quality!r}")
    if min(n_train, n_val, n_test) < 0 or not 32 <= size <= 4096:
        raise ValueError(f"make_patch_set({out}): counts must be >= 0 and size in 32..4096, got "
                         f"{n_train}/{n_val}/{n_test}, {size}")
    palette = class_palette(names, WHITE)  # the datasets' own colours, white glass at index len(names)
    n_cls = len(names)
    jobs = [("training", 0, i) for i in range(n_train)] + [("val", 1, i) for i in range(n_val)] + \
        [("test", 2, i) for i in range(n_test)]
    for folder in ("training", "val/img", "val/mask", "test/img", "test/mask"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for split_name, split, i in tqdm(jobs, desc="synthetic patches", unit="patch"):
        layout, idx, rng, key = _patch_layout(i, split, seed, n_cls, cls_kinds, size, mpp, p)
        present = set(np.unique(idx).tolist())
        bits = " ".join("1" if c in present else "0" for c in range(n_cls))
        targets: list[tuple[Path, np.ndarray | None]]
        if split_name == "training":
            targets = [(out / "training" / f"train_{i:05d}[{bits}].png", None)]
        else:
            stem = f"{split_name}_{i:05d}[{bits}].png"
            targets = [(out / split_name / "img" / stem, None), (out / split_name / "mask" / stem, idx)]
        if all(t.exists() for t, _ in targets):
            continue
        img, _ = _render_patch(layout.region_kinds.tolist(), size, mpp, p, rng, key, layout=layout)
        if quality is not None:
            img = _jpeg_round_trip(img, quality)
        save_png(targets[0][0], Image.fromarray(img, mode="RGB"))
        if len(targets) > 1:
            write_palette_mask(targets[1][0], idx, palette)
    return out
