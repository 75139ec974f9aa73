"""PatchCamelyon (PCam): the patch-level generalisation check of paper A.

PCam ships as HDF5 pairs ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``: dataset ``x`` is
``(N, 96, 96, 3)`` uint8 RGB, dataset ``y`` is ``(N, 1, 1, 1)`` uint8, 1 = tumor in the central 32×32 px.
Paper A's protocol: upsample each 96 px patch bilinearly ×2 (10x → the 20x its models were trained
at), pad it with 0 to the 224 px training input, and compare the network's patch tumor probability
with ``y`` (patch AUC).

Padding decision. The paper says the patches were "bi-linearly upsampled twice and padded with 0"; it
names a value, not the space it lives in. :func:`pcam_preprocess` pads with 0 *in the network's input
space*, i.e. after normalisation, so the frame is the normalisation mean colour (mid-grey for the
project's default mean 0.5), not black:

* 0 in normalised space is the value the network's own convolutions already pad every input with, so
  it is the "no image here" value the network met at the border of every training patch; a raw black
  frame (-1 after 0.5/0.5 normalisation) is a saturated colour absent from H&E training tiles (empty
  glass is white) and puts an artificial edge 16 px around the content on all four sides;
* the patch logit is the mean of the dense logits, and the frame is 27 % of the 224² input, so the
  choice is not negligible; padding a normalised tensor with ``F.pad`` / ``value=0`` is also what a
  PyTorch pipeline does by default.

The other reading (raw black) is one call away: ``pcam_preprocess(x)`` without ``mean``/``std`` pads
[0, 1] images with black, then normalise the result yourself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from monai_wsseg.metrics.auc import rank_auc

__all__ = ["PCamDataset", "evaluate_pcam", "pcam_preprocess"]

logger = logging.getLogger(__name__)

# The slide inferer's default normalisation (``WSIInferer``), so PCam patches look like slide tiles.
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


class PCamDataset(Dataset):
    """PCam patches (and labels) read from the official HDF5 files.

    Args:
        x_path: ``..._x.h5`` with dataset ``x``, ``(N, H, W, 3)`` uint8 (``H = W = 96`` officially).
        y_path: ``..._y.h5`` with dataset ``y`` of N elements in {0, 1} (officially ``(N, 1, 1, 1)``);
            ``None`` for unlabelled patches.
        transform: applied to the ``(3, H, W)`` uint8 image tensor.
        indices: subset of patch indices (into the file) to expose, in this order; all by default.

    Items:
        ``{"image": (3, H, W) uint8 tensor (or what transform returns), "label": () float tensor}``;
        no ``"label"`` without ``y_path``.

    The labels (N bytes) are read on construction; the images are read on demand from an HDF5 handle
    opened by the first ``__getitem__`` of each process, because h5py handles must not cross a fork:
    the handle is reopened when the process id changes and dropped when pickled, so the dataset works
    in DataLoader workers with either the fork or the spawn start method.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a file is not HDF5, lacks its dataset, has the wrong shape or dtype, or x and y
            disagree on N; the message names the file.
    """

    def __init__(
        self,
        x_path: str | os.PathLike,
        y_path: str | os.PathLike | None = None,
        *,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        import h5py

        self.x_path = Path(x_path)
        self.y_path = None if y_path is None else Path(y_path)
        with _open_h5(self.x_path) as f:
            x = _dataset(f, "x", self.x_path)
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
                raise ValueError(f"{self.x_path}: dataset 'x' must be (N, H, W, 3) uint8, got {x.shape} {x.dtype}")
            if x.shape[0] == 0:
                raise ValueError(f"{self.x_path}: dataset 'x' holds no patches")
            self.num_patches, self.patch_shape = int(x.shape[0]), tuple(int(s) for s in x.shape[1:])
        self.labels: np.ndarray | None = None
        if self.y_path is not None:
            with _open_h5(self.y_path) as f:
                y = _dataset(f, "y", self.y_path)
                if y.shape[:1] != (self.num_patches,) or y.size != self.num_patches:
                    raise ValueError(
                        f"{self.y_path}: dataset 'y' has shape {y.shape}, expected {self.num_patches} labels "
                        f"((N, 1, 1, 1) or (N,)) to match the {self.num_patches} patches of {self.x_path}"
                    )
                if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
                    raise ValueError(f"{self.y_path}: dataset 'y' must hold integer labels, got {y.dtype}")
                labels = np.asarray(y[()]).reshape(-1).astype(np.uint8)
            if not np.isin(labels, (0, 1)).all():
                raise ValueError(f"{self.y_path}: labels must be 0 or 1, got {np.unique(labels)[:10].tolist()}")
            self.labels = labels
        if indices is None:
            self.indices = np.arange(self.num_patches)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            bad = self.indices[(self.indices < 0) | (self.indices >= self.num_patches)]
            if bad.size:
                raise ValueError(f"{self.x_path}: indices {bad[:5].tolist()} outside [0, {self.num_patches})")
        self.transform = transform
        self._h5: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        k = int(self.indices[i])
        image = torch.from_numpy(self._images()[k]).permute(2, 0, 1).contiguous()
        item = {"image": self.transform(image) if self.transform is not None else image}
        if self.labels is not None:
            item["label"] = torch.tensor(float(self.labels[k]))
        return item

    def _images(self):
        """This process's handle on dataset ``x`` (opened on first use, reopened after a fork)."""
        if self._h5 is None or self._pid != os.getpid():
            import h5py

            # A handle inherited through fork shares the parent's HDF5 state; never read through it.
            self._h5 = h5py.File(self.x_path, "r")
            self._pid = os.getpid()
        return self._h5["x"]

    def close(self) -> None:
        """Close this process's handle (it is reopened on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"] = None, None  # h5py handles do not pickle; the receiver opens its own
        return state


def pcam_preprocess(
    images: torch.Tensor,
    *,
    scale: int = 2,
    size: int = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Paper A's PCam input: bilinear upsampling ×``scale``, then zero padding, centred, to ``size``.

    Args:
        images: ``(B, 3, H, W)`` uint8 (0–255) or float in [0, 1].
        scale: integer upsampling factor (``align_corners=False``, no antialiasing).
        size: output side; ``H * scale`` and ``W * scale`` must not exceed it. An odd margin puts the
            extra pixel at the bottom / right.
        mean, std: per-channel normalisation of [0, 1] RGB (the units of ``WSIInferer``), applied
            *before* padding: the padding is 0 in normalised space, i.e. the colour ``mean``. Both or
            neither; without them the output is [0, 1] RGB padded with 0 = black.

    Returns:
        ``(B, 3, size, size)`` float32 on ``images``' device.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be ≥ 1, got {scale}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    h, w = images.shape[2] * scale, images.shape[3] * scale
    if h > size or w > size:
        raise ValueError(f"a {tuple(images.shape[2:])} patch upsampled ×{scale} is {h}×{w}, larger than size={size}")
    if images.dtype == torch.uint8:
        x = images.float() / 255.0
    else:
        x = images.float()
        # A float batch in 0–255 would silently saturate the network; catch the unit slip here.
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"float images must lie in [0, 1], got [{x.min():.3g}, {x.max():.3g}]")
    if scale > 1:
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        if (s <= 0).any():
            raise ValueError(f"std must be > 0, got {list(std)}")
        x = (x - m) / s
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(x, (left, size - w - left, top, size - h - top), value=0.0)


@torch.inference_mode()
def evaluate_pcam(
    network: torch.nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    progress: bool = True,
) -> dict:
    """Patch AUC of a tumor network on PCam, with paper A's preprocessing (:func:`pcam_preprocess`).

    Args:
        network: moved to ``device`` and put in eval mode. Its patch logit is ``network.patch_logits(x)``
            when it has that method (:class:`~monai_wsseg.networks.fcn.ResNetFCN`), else the spatial
            mean of ``network(x)`` ``(B, 1, h, w)``; ``(B, 1)`` or ``(B,)`` outputs are taken as they are.
        dataset: labelled items ``{"image": (3, 96, 96) uint8 or [0, 1] float, "label": ()}``, e.g.
            :class:`PCamDataset` (its transform must keep those units: preprocessing happens here).
        mean, std: normalisation of [0, 1] RGB; ``None`` = the slide inferer's default (0.5, 0.5, 0.5).

    Returns:
        ``{"auc": float, "n": int, "positives": int, "probabilities": (n,) float64, "logits": (n,) float64}``
        in dataset order. The AUC is the exact Mann–Whitney statistic (ties count ½,
        :func:`~monai_wsseg.metrics.auc.rank_auc`), ranked on the logits so that probabilities saturating
        at 1.0 do not create ties; NaN with a single class.
    """
    mean = DEFAULT_MEAN if mean is None else mean
    std = DEFAULT_STD if std is None else std
    device = torch.device(device)
    network = network.to(device).eval()
    loader: Iterable[dict] = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False,
                                        pin_memory=device.type == "cuda")
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="PCam", unit="batch", leave=False)
    logits, labels = [], []
    for batch in loader:
        if "label" not in batch:
            raise ValueError("evaluate_pcam needs labelled items (give the dataset its y file)")
        x = pcam_preprocess(batch["image"].to(device, non_blocking=True), mean=mean, std=std)
        logits.append(_patch_logits(network, x).double().cpu())
        labels.append(batch["label"].reshape(-1))
    z = torch.cat(logits).numpy() if logits else np.zeros(0)
    y = torch.cat(labels).numpy().astype(np.int64) if labels else np.zeros(0, np.int64)
    return {
        "auc": rank_auc(z, y),
        "n": int(y.size),
        "positives": int(y.sum()),
        "probabilities": 1.0 / (1.0 + np.exp(-z)),
        "logits": z,
    }


def _patch_logits(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One tumor logit per patch, ``(B,)``."""
    patch_logits = getattr(network, "patch_logits", None)
    out = patch_logits(x) if patch_logits is not None else network(x)
    if out.ndim == 4:
        out = out.float().mean(dim=(2, 3))
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"expected a single-channel tumor network ((B, 1, h, w), (B, 1) or (B,) logits), got {tuple(out.shape)}"
        )
    return out.float()


def _open_h5(path: Path):
    """``h5py.File(path, "r")`` with errors that name the file."""
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"{path}: PCam file not found")
    if path.is_dir() or not h5py.is_hdf5(path):
        raise ValueError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: cannot be opened as HDF5 ({exc})") from exc


def _dataset(f, key: str, path: Path):
    """Dataset ``key`` of the open file ``f``, or a ValueError listing what the file holds."""
    import h5py

    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        found = ", ".join(sorted(f.keys())) or "nothing"
        raise ValueError(f"{path}: no dataset {key!r} (found: {found}); is this the PCam {key} file?")
    return obj
