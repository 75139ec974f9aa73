"""Patch datasets of paper B (WSSS): LUAD-HistoSeg and BCSS-WSSS folders, palette masks, pseudo masks.

Folder layout (both public datasets, and :func:`~monai_wsseg.synthetic.generator.make_patch_set`)::

    root/training/<name>[a b c d].png      training patches; the multi-hot label is in the name
    root/val/img/<name>.png                validation patches
    root/val/mask/<name>.png               their pixel labels: one-channel palette ("P") PNG, index = class
    root/test/img, root/test/mask          the same for the test set
    root/<pseudo_dir>/<training name>.png  pseudo masks written by the CAM job, one folder per CAM layer

Label order is the dataset's class order: LUAD-HistoSeg ``[TE NEC LYM TAS]`` written with spaces
(``x[1 0 1 0].png``), BCSS-WSSS ``[TUM STR LYM NEC]`` written without (``x[1010].png``).

Mask indices: ``0..C-1`` are the classes. One more index may occur, the *ignore index*: LUAD-HistoSeg's
white background (index ``C`` = 4, "background_index"), excluded from the loss and the metrics; BCSS has
no background class (its white is fat, i.e. tissue), but its masks may carry index ``C`` for pixels that
are none of the four classes ("other", outside the annotated region), which are not scored either.
Any other index is an error naming the file, so that a wrong palette or a class-count mismatch is found
when the data is read, not as a silently wrong IoU.

Items are dicts of tensors: ``image`` (3, H, W) float32 in [0, 1], ``label`` (C,) float32 multi-hot,
``mask`` / ``pseudo`` int64, ``name`` the file name (with extension; the pseudo-mask job writes its
masks under the same name). A ``transform`` receives and returns the whole dict, as MONAI dictionary
transforms do, so that spatial augmentation moves the image and its masks together
(:class:`~monai_wsseg.wsss.transforms.RandFlipRot90d`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage.morphology import remove_small_objects
from torch.utils.data import Dataset

from monai_wsseg.io.png import save_png
from monai_wsseg.utils.seeding import seed_transform

__all__ = [
    "PatchClassificationDataset",
    "PatchSegmentationDataset",
    "PseudoMaskDataset",
    "parse_label",
    "read_index_mask",
    "read_rgb",
    "white_background",
    "write_rgb_png",
]

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ labels
_SPACED = re.compile(r"[01](?: +[01])*")
_PACKED = re.compile(r"[01]+")


def parse_label(name: str | os.PathLike, num_classes: int) -> np.ndarray:
    """Multi-hot label ``(num_classes,)`` uint8 from a patch file name.

    Accepts the last ``[...]`` group of the name in either spelling: ``x[1 0 1 0].png``
    (LUAD-HistoSeg) or ``x[1010].png`` (BCSS-WSSS). Raises ``ValueError`` naming the file when
    there is no bracket group, a digit other than 0/1, or not exactly ``num_classes`` digits.
    """
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 1):
        raise ValueError(f"parse_label: num_classes must be a positive integer, got {num_classes!r}")
    fname = Path(name).name
    lo, hi = fname.rfind("["), fname.rfind("]")
    if lo < 0 or hi < lo:
        raise ValueError(f"{fname}: no [..] label in the file name (expected e.g. 'x[1 0 1 0].png' or 'x[1010].png')")
    body = fname[lo + 1 : hi].strip()
    if _SPACED.fullmatch(body) and " " in body:
        bits = body.split()
    elif _PACKED.fullmatch(body):
        bits = list(body)
    else:
        raise ValueError(f"{fname}: label must be 0/1 digits, either spaced '[1 0 1 0]' or packed '[1010]', "
                         f"got [{fname[lo + 1 : hi]}]")
    if len(bits) != num_classes:
        raise ValueError(f"{fname}: label [{body}] has {len(bits)} classes, expected {num_classes}")
    return np.array([int(b) for b in bits], dtype=np.uint8)


# ------------------------------------------------------------------------------------- image I/O
def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB (grey / RGBA / palette images are converted)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:  # PIL raises UnidentifiedImageError (an OSError) for bad files
        raise ValueError(f"{path}: cannot read image: {exc}") from exc


def read_index_mask(path: str | os.PathLike) -> np.ndarray:
    """A label mask file as ``(H, W)`` uint8 indices.

    Palette ("P") PNGs give their indices, one-channel ("L") PNGs their values. A colour (RGB) mask
    is refused: its colours would have to be mapped back to classes, which is not this reader's guess.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"{path}: a label mask must be a palette ('P') or one-channel ('L') image, "
                                 f"got mode {im.mode!r}")
            return np.asarray(im)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read mask: {exc}") from exc


def write_rgb_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG, atomically. Returns ``path``."""
    path = Path(path)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{path}: image must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    save_png(path, Image.fromarray(np.ascontiguousarray(arr), mode="RGB"))
    return path


# ------------------------------------------------------------------------------------ background
def white_background(image: np.ndarray, threshold: float = 200, min_size_px: int = 50,
                     connectivity: int = 1) -> np.ndarray:
    """White background of a patch: ``(H, W, 3)`` uint8 RGB -> ``(H, W)`` bool, True = background.

    Paper B's rule (reference code): a pixel is background when its grey level (ITU-R 601 luma, as
    PIL's "L" conversion) is above ``threshold``; connected background regions of fewer than
    ``min_size_px`` pixels are dropped (they are bright specks inside tissue, e.g. nuclei halos or
    lumina too small to be alveolar space). ``connectivity`` 1 = 4-neighbours, as scikit-image's default.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"white_background: image must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    if not (isinstance(min_size_px, (int, np.integer)) and min_size_px >= 0):
        raise ValueError(f"white_background: min_size_px must be an integer >= 0, got {min_size_px!r}")
    grey = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    mask = grey > threshold
    if min_size_px > 1 and mask.any():
        # skimage >= 0.26: max_size removes objects of <= max_size px, i.e. "< min_size_px"
        mask = remove_small_objects(mask, max_size=int(min_size_px) - 1, connectivity=connectivity)
    return mask


# -------------------------------------------------------------------------------------- datasets
def _png_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        parent = folder.parent
        seen = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        hint = f"; folders in {parent}: {seen}" if seen else ""
        raise FileNotFoundError(f"{folder}: {what} folder does not exist{hint}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{folder}: {what} folder holds no .png files")
    return files


def _image_tensor(path: Path) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(read_rgb(path).transpose(2, 0, 1))).float().div_(255.0)


def _check_num_classes(num_classes: Any, who: str) -> int:
    if not (isinstance(num_classes, (int, np.integer)) and not isinstance(num_classes, bool) and num_classes >= 1):
        raise ValueError(f"{who}: num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def _check_seed(seed: Any, who: str) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"{who}: seed must be a non-negative integer or None, got {seed!r}")
    return None if seed is None else int(seed)


def _check_background(background_index: Any, num_classes: int, who: str) -> int | None:
    if background_index is None:
        return None
    if not (isinstance(background_index, (int, np.integer)) and num_classes <= background_index <= 255):
        raise ValueError(f"{who}: background_index must be None or an integer in {num_classes}..255 "
                         f"(the class indices are 0..{num_classes - 1}), got {background_index!r}")
    return int(background_index)


def _check_indices(arr: np.ndarray, num_classes: int, ignore_index: int, path: Path) -> None:
    # One bincount instead of np.unique: masks are read once per item per epoch.
    counts = np.bincount(arr.ravel(), minlength=256)
    present = np.flatnonzero(counts)
    bad = [int(v) for v in present if v >= num_classes and v != ignore_index]
    if bad:
        raise ValueError(f"{path}: mask holds unknown index {bad} (classes are 0..{num_classes - 1}, "
                         f"ignore/background index {ignore_index})")


def _classes_present(arr: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(arr.ravel(), minlength=256)[:num_classes]
    return (counts > 0).astype(np.float32)


class _TransformMixin:
    """``transform`` applied to each item, its randomness drawn per item when ``seed`` is set.

    With ``seed``, item ``i`` of epoch ``e`` re-seeds the transform from ``(seed, e, i)`` before it runs, so
    an item's augmentation does not depend on which DataLoader worker reads it: figures stay the same
    whatever ``num_workers`` is (seeded per worker instead, one worker or two made the CPU demo's
    classifier reach test MIoU 0.886 or 0.957). The trainer calls :meth:`set_epoch` at each epoch start.
    """

    transform: Callable[[dict], dict] | None
    seed: int | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s augmentation (with ``seed``); called by the trainers at each epoch start."""
        self.epoch = int(epoch)

    def _finish(self, item: dict, index: int) -> dict:
        if self.transform is None:
            return item
        if self.seed is not None:
            seed_transform(self.transform, (self.seed, self.epoch, index))
        out = self.transform(item)
        if not isinstance(out, Mapping):
            raise ValueError(f"{type(self).__name__}: transform must take and return the item dict "
                             f"(MONAI dictionary transforms), got {type(out).__name__}")
        return out


class PatchClassificationDataset(_TransformMixin, Dataset):
    """Training patches with multi-hot labels from their file names (stage 1 of paper B).

    Args:
        root: dataset folder holding ``split/``.
        num_classes: label length C.
        class_names: optional names, C of them, kept as ``self.class_names`` for configs and reports.
        split: folder of the training patches (``"training"``; the WSSS reference code calls it ``"train"``).
        transform: called on the item dict, returns a dict.
        with_background: also give ``"background"``: ``(H, W)`` bool, :func:`white_background` of the
            raw patch (computed before ``transform``); the pseudo-mask job needs it for LUAD-HistoSeg.
        background_threshold, background_min_size_px: the :func:`white_background` rule.
        seed: with a seed, each item's augmentation is drawn from ``(seed, epoch, index)`` (see
            ``_TransformMixin``), the same whatever the DataLoader's worker count; ``None``: the
            transform's own stream (per worker).

    Items: ``{"image": (3, H, W) float32 in [0, 1], "label": (C,) float32 multi-hot, "name": str}``
    (+ ``"background"``). All file names are parsed at construction, so a malformed name fails before
    training starts. ``self.data`` lists ``{"name", "image" (path), "label"}`` per item without loading
    anything, as a MONAI ``Dataset.data`` does (the pseudo-mask job skips finished names with it).
    """

    def __init__(self, root: str | os.PathLike, num_classes: int, class_names: Sequence[str] | None = None,
                 split: str = "training", transform: Callable[[dict], dict] | None = None,
                 with_background: bool = False, background_threshold: float = 200,
                 background_min_size_px: int = 50, seed: int | None = None) -> None:
        who = type(self).__name__
        self.seed = _check_seed(seed, who)
        self.num_classes = _check_num_classes(num_classes, who)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != self.num_classes or len(set(class_names)) != len(class_names):
                raise ValueError(f"{who}: class_names must be {self.num_classes} distinct names, got {class_names}")
        self.class_names = class_names
        self.root = Path(root)
        self.folder = self.root / split
        self.files = _png_files(self.folder, "training patch")
        self.labels = np.stack([parse_label(p.name, self.num_classes) for p in self.files])
        empty = [p.name for p, lab in zip(self.files, self.labels, strict=True) if not lab.any()]
        if empty:
            # allowed (a patch of "none of the classes" is a valid negative), but usually a naming slip
            logger.warning("%s: %d patch(es) with an all-zero label, e.g. %s", self.folder, len(empty), empty[:3])
        self.data = [
            {"name": p.name, "image": str(p), "label": lab.tolist()}
            for p, lab in zip(self.files, self.labels, strict=True)
        ]
        self.transform = transform
        self.with_background = bool(with_background)
        self.background_threshold, self.background_min_size_px = background_threshold, background_min_size_px

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        rgb = read_rgb(path)
        item = {"image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0),
                "label": torch.from_numpy(self.labels[index].astype(np.float32)), "name": path.name}
        if self.with_background:
            item["background"] = torch.from_numpy(
                white_background(rgb, self.background_threshold, self.background_min_size_px))
        return self._finish(item, index)


class PatchSegmentationDataset(_TransformMixin, Dataset):
    """Validation / test patches with their pixel masks (``split/img`` + ``split/mask``, same file names).

    Args:
        root: dataset folder.
        split: ``"val"`` or ``"test"`` (any folder with ``img/`` and ``mask/`` works).
        num_classes: C; class indices are ``0..C-1``.
        background_index: LUAD-HistoSeg: ``C`` (= 4), the white background, kept in the mask as given so
            the metrics can ignore it. ``None`` (BCSS): no background class; index ``C`` is still
            accepted as "not scored". ``self.ignore_index`` is the index the metrics should ignore.
        transform: called on the item dict, returns a dict.

    Items: ``{"image": (3, H, W) float32 in [0, 1], "mask": (H, W) int64, "label": (C,) float32,
    "name": str}``; ``label`` = the classes present in the mask (the pixel truth, not the name).
    A mask with any other index, or of another size than its image, raises ``ValueError`` naming it.
    """

    def __init__(self, root: str | os.PathLike, split: str, num_classes: int, background_index: int | None = None,
                 transform: Callable[[dict], dict] | None = None) -> None:
        who = type(self).__name__
        self.num_classes = _check_num_classes(num_classes, who)
        self.background_index = _check_background(background_index, self.num_classes, who)
        self.ignore_index = self.num_classes if self.background_index is None else self.background_index
        self.root = Path(root)
        split_dir = self.root / str(split)
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir}: split folder does not exist (expected {split}/img and {split}/mask)")
        self.files = _png_files(split_dir / "img", f"{split} image")
        masks = {p.name for p in _png_files(split_dir / "mask", f"{split} mask")}
        names = {p.name for p in self.files}
        no_mask, no_image = sorted(names - masks), sorted(masks - names)
        if no_mask or no_image:
            parts = []
            if no_mask:
                parts.append(f"{len(no_mask)} image(s) without a mask in {split_dir / 'mask'}, e.g. {no_mask[:5]}")
            if no_image:
                parts.append(f"{len(no_image)} mask(s) without an image in {split_dir / 'img'}, e.g. {no_image[:5]}")
            raise FileNotFoundError(f"{split_dir}: " + "; ".join(parts))
        self.mask_files = [split_dir / "mask" / p.name for p in self.files]
        self.data = [{"name": p.name, "image": str(p), "mask": str(m)}
                     for p, m in zip(self.files, self.mask_files, strict=True)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path, mpath = self.files[index], self.mask_files[index]
        image = _image_tensor(path)
        mask = read_index_mask(mpath)
        if mask.shape != tuple(image.shape[1:]):
            raise ValueError(f"{mpath}: mask is {mask.shape[1]}x{mask.shape[0]} px, its image "
                             f"{path.name} is {image.shape[2]}x{image.shape[1]} px")
        _check_indices(mask, self.num_classes, self.ignore_index, mpath)
        item = {"image": image, "mask": torch.from_numpy(mask.astype(np.int64)),
                "label": torch.from_numpy(_classes_present(mask, self.num_classes)), "name": path.name}
        return self._finish(item, index)


class PseudoMaskDataset(_TransformMixin, Dataset):
    """Training patches with their labels and one pseudo mask per CAM layer (stage 2 of paper B).

    Args:
        root: dataset folder.
        pseudo_dirs: L folders (one per CAM layer, e.g. ``["pseudo/b4_3", "pseudo/b5_2", "pseudo/bn7"]``,
            in the order the loss weights use); relative paths are taken from ``root``. Each holds a
            palette PNG per training patch under the patch's file name.
        num_classes: C.
        background_index: index of the white background in the pseudo masks (LUAD: C), or ``None``
            (BCSS); as in :class:`PatchSegmentationDataset`, index C is accepted either way.
        split: folder of the training patches.
        transform: called on the item dict, returns a dict.
        seed: as for :class:`PatchClassificationDataset`.

    Items: ``{"image": (3, H, W) float32 in [0, 1], "label": (C,) float32 (from the name),
    "pseudo": (L, H, W) int64, "name": str}``. Missing folders and missing mask files are reported at
    construction (all of them, per folder); unknown indices and size mismatches when an item is read.
    """

    def __init__(self, root: str | os.PathLike, pseudo_dirs: Sequence[str | os.PathLike], num_classes: int,
                 background_index: int | None = None, split: str = "training",
                 transform: Callable[[dict], dict] | None = None, seed: int | None = None) -> None:
        who = type(self).__name__
        self.seed = _check_seed(seed, who)
        self.num_classes = _check_num_classes(num_classes, who)
        self.background_index = _check_background(background_index, self.num_classes, who)
        self.ignore_index = self.num_classes if self.background_index is None else self.background_index
        if isinstance(pseudo_dirs, (str, os.PathLike)) or not len(pseudo_dirs):
            raise ValueError(f"{who}: pseudo_dirs must be a non-empty list of folders, got {pseudo_dirs!r}")
        self.root = Path(root)
        self.files = _png_files(self.root / split, "training patch")
        self.labels = np.stack([parse_label(p.name, self.num_classes) for p in self.files])
        self.pseudo_dirs = [Path(d) if Path(d).is_absolute() else self.root / d for d in pseudo_dirs]
        missing_dirs = [str(d) for d in self.pseudo_dirs if not d.is_dir()]
        if missing_dirs:
            raise FileNotFoundError(f"{who}: pseudo-mask folder(s) do not exist: {missing_dirs} "
                                    "(run the pseudo-mask job for every configured CAM layer first)")
        problems = []
        for d in self.pseudo_dirs:
            have = {p.name for p in d.iterdir()}
            lacking = [p.name for p in self.files if p.name not in have]
            if lacking:
                problems.append(f"{d}: {len(lacking)} of {len(self.files)} pseudo masks missing, e.g. "
                                f"{[str(d / n) for n in lacking[:3]]}")
        if problems:
            raise FileNotFoundError(f"{who}: " + "; ".join(problems))
        self.data = [{"name": p.name, "image": str(p), "pseudo": [str(d / p.name) for d in self.pseudo_dirs]}
                     for p in self.files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        image = _image_tensor(path)
        layers = []
        for d in self.pseudo_dirs:
            mpath = d / path.name
            if not mpath.is_file():  # deleted after construction
                raise FileNotFoundError(f"{mpath}: pseudo mask missing for {path.name}")
            m = read_index_mask(mpath)
            if m.shape != tuple(image.shape[1:]):
                raise ValueError(f"{mpath}: pseudo mask is {m.shape[1]}x{m.shape[0]} px, its image is "
                                 f"{image.shape[2]}x{image.shape[1]} px")
            _check_indices(m, self.num_classes, self.ignore_index, mpath)
            layers.append(m)
        item = {"image": image, "label": torch.from_numpy(self.labels[index].astype(np.float32)),
                "pseudo": torch.from_numpy(np.stack(layers).astype(np.int64)), "name": path.name}
        return self._finish(item, index)
