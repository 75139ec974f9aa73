"""The pseudo-mask job of paper B: Grad-CAM masks at several layers for every training patch, on disk.

For each patch of a dataset and each layer in ``layers`` (paper: ``b4_3``, ``b5_2``, ``bn7``) one palette
PNG ``output_dir/<layer>/<name>`` is written (``layer_dirs`` renames a layer's folder): the argmax of the
present classes' Grad-CAMs (:func:`~monai_wsseg.wsss.cam.multi_layer_gradcam` +
:func:`~monai_wsseg.wsss.cam.cams_to_mask`), with white background set to ``background_index`` when one is
given (LUAD-HistoSeg) and no background class otherwise (BCSS-WSSS, whose white areas are fat, i.e. tissue).

Dataset items are dicts (MONAI style):

* ``"image"``: ``(3, H, W)`` float, normalised as the classifier expects;
* ``"label"``: ``(C,)`` multi-hot;
* ``"name"``: the output file name (``".png"`` appended if missing), e.g. ``"img[1 0 0 1].png"``; no folders;
* only when ``background_index`` is given, one of
  ``"background"``: ``(H, W)`` bool (true = background), precomputed by the dataset, or
  ``"raw"``: the un-normalised image, uint8 ``(H, W, 3)`` or ``(3, H, W)``, from which the white
  background is computed here with :func:`monai_wsseg.wsss.patches.white_background` (paper B's rule:
  grey > 200, 4-connected pieces < 50 px dropped). ``PatchClassificationDataset(with_background=True)``
  gives ``"background"`` directly.

Writing is atomic (temporary file + ``os.replace``) and the job is resumable: a patch whose masks exist
for every layer is skipped — before it is even loaded when the dataset exposes its items' names (a MONAI
``Dataset``'s ``data`` list of dicts with ``"name"``), after loading otherwise.

Usable from a bundle either as a function call or as ``PseudoMaskJob(...).run()``; with
:class:`~monai_wsseg.wsss.pda.PDAClassifier` over ResNet38d, whose ``"final"`` feature is ReLU(bn7),
the activation the reference's "bn7" Grad-CAM uses (its ``"bn7"`` feature is the BatchNorm output
before that ReLU)::

    "pseudo_masks": {"_target_": "monai_wsseg.wsss.pseudo_masks.PseudoMaskJob",
                     "network_or_fn": "$@network.forward_with_features", "dataset": "@dataset",
                     "output_dir": "$@bundle_root + '/pseudo_masks'", "layers": ["b4_3", "b5_2", "final"],
                     "layer_dirs": {"final": "bn7"}, "batch_size": 16, "device": "@device",
                     "background_index": 4, "palette": "$monai_wsseg.io.palettes.PALETTES['luad']"},
    "run": "$@pseudo_masks.run()"

Any other ``nn.Module`` can be given as ``"@network"`` with submodule names as ``layers`` (forward hooks).
On a CPU, batches of 2–4 patches are fastest (larger ones fall out of cache, see
:func:`~monai_wsseg.wsss.cam.multi_layer_gradcam`); on a GPU, as large as memory allows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from monai_wsseg.io.palettes import flat_palette, index_palette, write_palette_mask
from monai_wsseg.utils.precision import resolve_precision
from monai_wsseg.wsss.cam import (
    ForwardWithFeatures,
    HookedForward,
    Normalise,
    cams_to_mask,
    check_layer_names,
    multi_layer_gradcam,
)

__all__ = [
    "PseudoMaskJob",
    "mask_path",
    "write_pseudo_masks",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- helpers
def _file_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise ValueError(f"item name must be a non-empty file name, got {name!r}")
    if "/" in name or "\\" in name or os.sep in name:
        raise ValueError(f"item name {name!r} must be a plain file name, without folders")
    return name if name.lower().endswith(".png") else name + ".png"


def mask_path(output_dir: str | os.PathLike, layer: str, name: str) -> Path:
    """Where the mask of ``name`` at ``layer`` goes: ``output_dir/<layer>/<name>`` (``.png`` appended if missing)."""
    return Path(output_dir) / layer / _file_name(name)


def _known_names(dataset: Dataset) -> list[str] | None:
    """Item names without loading images, when the dataset exposes them (MONAI ``Dataset.data``)."""
    data = getattr(dataset, "data", None)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        try:
            # A dataset without __len__ raises the TypeError caught below.
            n = len(dataset)  # type: ignore[arg-type]
            if len(data) == n and all(isinstance(d, Mapping) and isinstance(d.get("name"), str) for d in data):
                return [d["name"] for d in data]
        except TypeError:
            return None
    return None


def _collate(items: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep names as a list; only the keys the job uses."""
    batch: dict[str, Any] = {"name": [it.get("name") for it in items]}
    for key in ("image", "label", "background", "raw"):
        if all(key in it for it in items):
            batch[key] = torch.stack([torch.as_tensor(np.asarray(it[key]) if not isinstance(it[key], torch.Tensor)
                                                      else it[key]) for it in items])
        elif any(key in it for it in items):
            raise ValueError(f"some items have {key!r} and some do not: {batch['name']}")
    for key in ("image", "label"):
        if key not in batch:
            raise ValueError(f"dataset items need {key!r} (items {batch['name']})")
    return batch


def _resolve_network(network_or_fn: nn.Module | ForwardWithFeatures, layers: list[str]
                     ) -> tuple[ForwardWithFeatures, nn.Module | None]:
    """The forward function and, when known, the module behind it (to set eval mode and the device)."""
    if isinstance(network_or_fn, nn.Module):
        return HookedForward(network_or_fn, layers), network_or_fn
    if not callable(network_or_fn):
        raise ValueError(f"network_or_fn must be an nn.Module or a forward_with_features function, "
                         f"got {type(network_or_fn).__name__}")
    # A bound method such as ``model.forward_with_features``: its module still has to be in eval mode.
    owner = getattr(network_or_fn, "__self__", None)
    if not isinstance(owner, nn.Module):
        owner = getattr(network_or_fn, "model", None)  # e.g. a HookedForward passed directly
    return network_or_fn, owner if isinstance(owner, nn.Module) else None


# ----------------------------------------------------------------------------------------- the job
def write_pseudo_masks(  # noqa: C901 - one job loop (skip, check, compute, write) over shared state
    network_or_fn: nn.Module | ForwardWithFeatures,
    dataset: Dataset,
    output_dir: str | os.PathLike,
    layers: Sequence[str],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    normalise: Normalise = "global",
    relu: bool = True,
    background_index: int | None = None,
    palette: Sequence[Any] | None = None,
    layer_dirs: Mapping[str, str] | None = None,
    grey_threshold: int = 200,
    min_background_size: int = 50,
    num_workers: int = 0,
    progress: bool = True,
    precision: str = "auto",
) -> dict[str, int]:
    """Write one Grad-CAM pseudo mask per patch per layer: ``output_dir/<layer>/<name>`` (palette PNG).

    Args:
        network_or_fn: the trained classifier (an ``nn.Module``; ``layers`` are its submodule names, read by
            forward hooks) or a :data:`~monai_wsseg.wsss.cam.ForwardWithFeatures` function. The module
            (also the one behind a bound method or a :class:`~monai_wsseg.wsss.cam.HookedForward`) is
            put in eval mode and moved to ``device`` for the job and restored to its training mode after.
        dataset: items as described in the module docstring.
        output_dir: created if missing, with one sub-folder per layer (made once the first batch has shown
            the layer names to be right).
        layers: e.g. ``["b4_3", "b5_2", "bn7"]``.
        batch_size: patches per forward pass (memory: activations of the batch plus one backward).
        device: where the network runs.
        precision: autocast of the forward and backward passes (:mod:`monai_wsseg.utils.precision`; the
            Grad-CAM weighted sums stay fp32).
        normalise, relu: see :func:`~monai_wsseg.wsss.cam.multi_layer_gradcam` (they change the mask only
            through ``normalise="per_class"``; ``"global"`` keeps the raw maps' argmax).
        background_index: label of white background (LUAD-HistoSeg: ``C`` = 4); ``None``: no background class
            (BCSS-WSSS). When given, items need ``"background"`` or ``"raw"``.
        palette: RGB triples (or a flat list) covering every index used; default
            :func:`~monai_wsseg.io.palettes.index_palette`. ``PALETTES["luad"]`` / ``PALETTES["bcss"]`` of
            :mod:`monai_wsseg.io.palettes` are the datasets' own mask colours.
        layer_dirs: output folder per layer when it should differ from the layer's name, e.g.
            ``{"final": "bn7"}``: the reference's "bn7" Grad-CAM is taken on ReLU(bn7), which
            :class:`~monai_wsseg.wsss.resnet38.ResNet38d` calls ``"final"``.
        grey_threshold, min_background_size: the white-background rule for items with ``"raw"``
            (:func:`monai_wsseg.wsss.patches.white_background`).
        num_workers: DataLoader workers.
        progress: show a tqdm bar.

    Returns:
        ``{"images": patches in the dataset, "written": patches computed now, "skipped": patches whose masks
        all existed, "files": PNG files written}``.

    Raises:
        ValueError: a layer that is not in the network (before any work), bad items (shapes, names, missing
            background input, duplicate names), a palette too short.
    """
    layers = list(layers) if not isinstance(layers, str) else [layers]
    dirs = _layer_dirs(layers, layer_dirs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if background_index is not None and not 0 <= int(background_index) <= 255:
        raise ValueError(f"background_index must be in 0..255 (uint8 PNG), got {background_index}")
    fn, module = _resolve_network(network_or_fn, layers)
    if isinstance(fn, HookedForward):
        # Fail before loading any data. A plain function's feature names are only known after its first
        # call, which happens before anything is written.
        check_layer_names(fn.model, layers)
    out = Path(output_dir)

    def done(name: str) -> bool:
        return all(mask_path(out, dirs[layer], name).exists() for layer in layers)

    total = len(dataset)  # type: ignore[arg-type]  # map-style datasets have __len__; torch's Dataset omits it
    names = _known_names(dataset)
    source: Dataset = dataset
    pre_skipped = 0
    if names is not None:
        todo = [i for i, n in enumerate(names) if not done(n)]
        pre_skipped = total - len(todo)
        source = Subset(dataset, todo)
    counts = {"images": total, "written": 0, "skipped": pre_skipped, "files": 0}
    if len(source) == 0:  # type: ignore[arg-type]  # as above
        logger.info("pseudo masks: all %d patches already done in %s", total, out)
        return counts

    loader: Iterable[Any] = DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       collate_fn=_collate)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="pseudo masks", unit="batch", leave=False)
    device = torch.device(device)
    autocast = resolve_precision(precision, device).for_training()  # backward passes: contiguous tensors
    was_training = module.training if module is not None else None
    if module is not None:
        module.to(device).eval()  # eval mode makes the images of a batch independent (exact batched CAMs)
    colours: list[int] | None = None
    seen: set[str] = set()
    made_dirs = False
    try:
        for batch in loader:
            files = [_file_name(n) for n in batch["name"]]
            for f in files:
                if f in seen:
                    raise ValueError(f"two items are named {f!r}: their masks would overwrite each other")
                seen.add(f)
            keep = [i for i, f in enumerate(files) if not done(f)]
            counts["skipped"] += len(files) - len(keep)
            if not keep:
                continue
            images = batch["image"][keep].to(device=device, dtype=torch.float32)
            labels = batch["label"][keep].to(device)
            if images.ndim != 4 or labels.ndim != 2:
                raise ValueError(f"items need image (3, H, W) and label (C,); got batch shapes "
                                 f"{tuple(images.shape)}, {tuple(labels.shape)} for {files[keep[0]]!r}")
            n_cls = labels.shape[1]
            if colours is None:
                needed = max(n_cls, (int(background_index) + 1) if background_index is not None else 0)
                if needed > 256:
                    raise ValueError(f"{needed} labels do not fit a uint8 palette PNG")
                colours = flat_palette(palette if palette is not None
                                       else index_palette(n_cls, background_index), needed)
            background = _background(batch, keep, files, background_index, images.shape[-2:],
                                     grey_threshold, min_background_size)
            with autocast.autocast():
                cams = multi_layer_gradcam(fn, images, labels, layers, normalise=normalise, relu=relu)
            if not made_dirs:  # only now are all layer names known to be right
                for layer in layers:
                    (out / dirs[layer]).mkdir(parents=True, exist_ok=True)
                made_dirs = True
            for layer in layers:
                masks = cams_to_mask(cams[layer], background, background_index, labels=labels).cpu().numpy()
                for row, i in enumerate(keep):
                    write_palette_mask(mask_path(out, dirs[layer], files[i]), masks[row], colours)
                    counts["files"] += 1
            counts["written"] += len(keep)
    finally:
        if module is not None and was_training:
            module.train()
    logger.info("pseudo masks: %d written, %d skipped, %d files in %s", counts["written"], counts["skipped"],
                counts["files"], out)
    return counts


def _background(batch: Mapping[str, Any], keep: list[int], files: list[str], background_index: int | None,
                size: torch.Size, threshold: int, min_size: int) -> torch.Tensor | None:
    """``(B, H, W)`` bool background of the kept items (``None`` without a background class)."""
    if background_index is None:
        return None
    if "background" in batch:
        bg = batch["background"][keep].bool()
    elif "raw" in batch:
        # One definition of the white-background rule in the package: the patch datasets' own.
        from monai_wsseg.wsss.patches import white_background

        bg = torch.from_numpy(np.stack([white_background(_hwc_uint8(batch["raw"][i], files[i]), threshold, min_size)
                                        for i in keep]))
    else:
        raise ValueError(f"background_index={background_index} needs a 'background' mask or the uint8 'raw' "
                         f"image in every item ({files[keep[0]]!r} has neither)")
    if tuple(bg.shape[-2:]) != tuple(size):
        raise ValueError(f"background of {files[keep[0]]!r} is {tuple(bg.shape[-2:])}, image is {tuple(size)}")
    return bg


def _hwc_uint8(raw: torch.Tensor, name: str) -> np.ndarray:
    """An item's ``"raw"`` image as ``(H, W, 3)`` uint8 (it may come as ``(3, H, W)``)."""
    arr = raw.detach().cpu().numpy()
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"'raw' of {name!r} must be uint8 RGB (H, W, 3) or (3, H, W), got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def _layer_dirs(layers: list[str], layer_dirs: Mapping[str, str] | None) -> dict[str, str]:
    """``{layer: output folder name}``, checked: plain, distinct folder names; no unknown keys."""
    if not layers:
        raise ValueError("layers is empty: name at least one layer, e.g. ['b4_3', 'b5_2', 'bn7']")
    given = dict(layer_dirs or {})
    unknown = [k for k in given if k not in layers]
    if unknown:
        raise ValueError(f"layer_dirs names layers that are not in layers {layers}: {unknown}")
    dirs = {layer: given.get(layer, layer) for layer in layers}
    for layer, folder in dirs.items():
        if not isinstance(folder, str) or not folder or "/" in folder or "\\" in folder or folder in (".", ".."):
            raise ValueError(f"{folder!r} (layer {layer!r}) cannot be a folder name; set layer_dirs")
    if len(set(dirs.values())) != len(dirs):
        raise ValueError(f"two layers would write to the same folder: {dirs}")
    return dirs


class PseudoMaskJob:
    """:func:`write_pseudo_masks` as an object for bundle configs: build it with the same arguments, then
    ``"$@pseudo_masks.run()"``. ``run()`` returns the counts (also kept in ``self.counts``)."""

    def __init__(self, network_or_fn: nn.Module | ForwardWithFeatures, dataset: Dataset,
                 output_dir: str | os.PathLike, layers: Sequence[str], **kwargs: Any) -> None:
        self.network_or_fn = network_or_fn
        self.dataset = dataset
        self.output_dir = output_dir
        self.layers = list(layers)
        self.kwargs = kwargs
        self.counts: dict[str, int] | None = None
        # Fail at config parsing time, not after the data is loaded, when a layer name is wrong.
        if isinstance(network_or_fn, nn.Module):
            check_layer_names(network_or_fn, self.layers)

    def run(self) -> dict[str, int]:
        """Run :func:`write_pseudo_masks`; returns its counts."""
        self.counts = write_pseudo_masks(self.network_or_fn, self.dataset, self.output_dir, self.layers,
                                         **self.kwargs)
        return self.counts
