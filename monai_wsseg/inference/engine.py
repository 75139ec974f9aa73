"""Run a network over the tissue of a whole slide and stitch its outputs into per-class maps.

Why not ``monai.inferers.PatchInferer`` + ``WSISlidingWindowSplitter``: the splitter reads every window
before its filter can reject it (background is read and decoded), reads serially in the calling
process, and with the tifffile backend decodes a whole pyramid level per patch. Here tiles without
tissue are never planned (:mod:`monai_wsseg.inference.tiles`), windows are read by DataLoader workers
while the network runs, and stitching uses MONAI's ``AvgMerger`` (``ZarrAvgMerger`` out of core when
the map would exceed a memory budget). A fully convolutional network runs on large tiles with a halo
that covers its receptive field, so every map cell is computed once and tile seams are invisible.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.inferers import AvgMerger
from torch.utils.data import DataLoader, Dataset

from monai_wsseg.inference.tiles import TilePlan, check_tile_settings, plan_tiles
from monai_wsseg.utils.precision import resolve_precision
from monai_wsseg.wsi.slide import Slide, SlideReadError, open_slide
from monai_wsseg.wsi.tissue import TissueMask, compute_tissue_mask

if TYPE_CHECKING:
    from monai_wsseg.wsi.stain import MacenkoNormalizer, ReinhardNormalizer

__all__ = ["SlideMap", "TileWindows", "WSIInferer"]

logger = logging.getLogger(__name__)


@dataclass
class SlideMap:
    """Per-class maps of one slide.

    Attributes:
        slide: path of the slide.
        probabilities: ``(C, h, w)`` float32 in ``[0, 1]`` (after the activation), NaN where no tile was
            computed (no tissue, or an unreadable region).
        downsample: level-0 slide pixels per map cell (an integer; the map covers the whole slide).
        mpp: microns per map cell.
        unread: level-0 ``(x, y, width, height)`` boxes of windows that could not be read (halo included).
        unread_tiles: level-0 ``(x, y, width, height)`` of the kept part of each of those windows: its map
            cells are no-data (NaN) unless an overlapping tile covered them.
    """

    slide: str
    probabilities: np.ndarray
    downsample: int
    mpp: float
    unread: list[tuple[int, int, int, int]] = field(default_factory=list)
    unread_tiles: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def computed(self) -> np.ndarray:
        """``(h, w)`` bool: cells that hold a prediction."""
        return ~np.isnan(self.probabilities[0])


class TileWindows(Dataset):
    """The input windows of a plan as ``(3, window, window)`` uint8 tensors (uint8 keeps worker IPC small)."""

    def __init__(self, slide: Slide, plan: TilePlan) -> None:
        self.slide, self.plan = slide, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, bool]:
        size = (self.plan.window, self.plan.window)
        try:
            region = self.slide.read_region(tuple(self.plan.origins[i]), size, mpp=self.plan.mpp)
            return torch.from_numpy(region).permute(2, 0, 1).contiguous(), i, True
        except SlideReadError as exc:
            # One bad tile must not end a whole-slide job: the caller marks it no-data and reports it.
            logger.warning("%s", exc)
            return torch.zeros((3, *size), dtype=torch.uint8), i, False


class WSIInferer:
    """Whole-slide inference: slide → ``(C, h, w)`` maps at ``mpp × stride`` microns per cell.

    Args:
        network: maps a ``(B, 3, S, S)`` float batch to ``(B, C, S / stride, S / stride)`` logits.
        mpp: input microns per pixel (0.5 ≈ 20x); a stored level within 5 % is read as it is.
        stride: the network's output stride (input pixels per output cell).
        tile: kept input pixels per tile side, a multiple of ``stride`` (large for a fully convolutional
            network, e.g. 1024–2048; the patch size for a patch network).
        halo: input pixels read around each tile and cropped from its output; at least the receptive
            field radius of a fully convolutional network; 0 for a patch network.
        overlap: fraction of a tile shared with its neighbours, averaged (paper B uses ≥ 0.5).
        num_classes: output channels the network must produce.
        activation: ``"sigmoid"``, ``"softmax"`` or ``"none"``; applied before averaging.
        mean, std: per-channel normalisation of ``[0, 1]`` RGB input.
        batch_size, num_workers: DataLoader settings (workers read and decode while the network runs).
        device: ``"cpu"``, ``"cuda"`` ...
        precision: ``"auto"`` (bf16 autocast and channels-last on a CPU with native bf16, bf16/fp16 autocast
            on CUDA, fp32 otherwise), ``"fp32"``, ``"bf16"`` or ``"fp16"``; see
            :mod:`monai_wsseg.utils.precision`. The resolved choice is :attr:`precision`.
        tissue_mpp: resolution of the tissue mask that decides which tiles are read.
        min_tile_tissue: tiles with tissue anywhere in their footprint are kept when 0.
        memory_budget_mb: above this size the map is stitched out of core (``ZarrAvgMerger``).
        progress: show a progress bar.
        stain_normalizer: e.g. :func:`monai_wsseg.wsi.stain.stain_normalizer`'s result (anything with
            ``for_slide(pixels) -> transform``). Fitted once per slide on the tissue pixels of a read at
            the tissue mask's resolution; its transform maps every uint8 tile batch before
            :meth:`preprocess`. ``None`` (default): tiles go to the network as read.
        decode: ``"workers"`` (default): DataLoader workers read and decode windows through the slide's
            backend. ``"device"``: JPEG tiles are read as bytes and decoded on ``device``
            (:mod:`monai_wsseg.inference.device_decode`: nvJPEG on CUDA, where CPU decoding cannot keep up
            with the network); needs a JPEG-tiled TIFF level within 5 % of ``mpp``, else the slide is refused.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        *,
        mpp: float,
        stride: int,
        tile: int,
        halo: int = 0,
        overlap: float = 0.0,
        num_classes: int = 1,
        activation: str = "sigmoid",
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        batch_size: int = 4,
        num_workers: int = 1,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        tissue_mpp: float = 8.0,
        memory_budget_mb: float = 2048,
        progress: bool = True,
        stain_normalizer: ReinhardNormalizer | MacenkoNormalizer | None = None,
        decode: str = "workers",
    ) -> None:
        if activation not in ("sigmoid", "softmax", "none"):
            raise ValueError(f"activation must be 'sigmoid', 'softmax' or 'none', got {activation!r}")
        if decode not in ("workers", "device"):
            raise ValueError(f"WSIInferer: decode must be 'workers' or 'device', got {decode!r}")
        if halo > tile:
            raise ValueError(f"tile ({tile} px) is smaller than the receptive-field halo ({halo} px): raise the tile")
        if num_classes < 1 or batch_size < 1 or num_workers < 0:
            raise ValueError(f"WSIInferer: num_classes ({num_classes}) and batch_size ({batch_size}) must be ≥ 1 "
                             f"and num_workers ({num_workers}) ≥ 0")
        # Checked here, not at the first slide: a cohort would otherwise fail every slide with it, one by one.
        check_tile_settings("WSIInferer", mpp=mpp, stride=stride, tile=tile, halo=halo, overlap=overlap)
        self.network = network
        self.mpp, self.stride, self.tile, self.halo, self.overlap = mpp, stride, tile, halo, overlap
        self.num_classes, self.activation = num_classes, activation
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255
        self.batch_size, self.num_workers = batch_size, num_workers
        self.precision = resolve_precision(precision, self.device)
        self.tissue_mpp, self.memory_budget_mb, self.progress = tissue_mpp, memory_budget_mb, progress
        if stain_normalizer is not None and not callable(getattr(stain_normalizer, "for_slide", None)):
            raise ValueError(f"WSIInferer: stain_normalizer must have a for_slide(pixels) method, got "
                             f"{type(stain_normalizer).__name__}")
        self.stain_normalizer = stain_normalizer
        self.decode = decode

    def plan(self, slide: Slide, tissue: TissueMask | None = None) -> TilePlan:
        """The tiles this inferer would run on ``slide`` (computing its tissue mask when not given)."""
        if tissue is None:
            tissue = compute_tissue_mask(slide, mpp=self.tissue_mpp)
        return plan_tiles(
            slide, mpp=self.mpp, stride=self.stride, tile=self.tile, halo=self.halo, overlap=self.overlap, tissue=tissue
        )

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` uint8 → normalised float on the inferer's device."""
        batch = batch.to(self.device, non_blocking=True).float()
        return (batch - self.mean) / self.std

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.activation == "sigmoid":
            return torch.sigmoid(logits)
        if self.activation == "softmax":
            return torch.softmax(logits, dim=1)
        return logits

    @torch.no_grad()
    def __call__(
        self, slide: Slide | str | os.PathLike, tissue: TissueMask | None = None, plan: TilePlan | None = None
    ) -> SlideMap:
        """Maps of one slide (see :class:`SlideMap`); a slide without tissue gives all-NaN maps and a warning.

        ``plan`` runs those tiles instead of planning the slide (e.g. the tiles of one region, see
        :func:`monai_wsseg.inference.region.infer_region`); its cells index the returned map.
        """
        if not isinstance(slide, Slide):
            slide = open_slide(slide)
        thumb = None
        if self.stain_normalizer is not None and tissue is None:
            # One low-resolution read serves both the tissue mask and the stain fit.
            thumb = slide.thumbnail(self.tissue_mpp)
            view = SimpleNamespace(path=slide.path, mpp=slide.mpp, dimensions=slide.dimensions,
                                   thumbnail=lambda mpp: thumb)
            tissue = compute_tissue_mask(view, mpp=self.tissue_mpp)
        plan = self.plan(slide, tissue) if plan is None else plan
        map_w, map_h = plan.map_size
        shape = (1, self.num_classes, map_h, map_w)
        if len(plan) == 0:
            warnings.warn(f"{slide.path}: no tissue found; the maps are empty", stacklevel=2)
            empty = np.full(shape[1:], np.nan, dtype=np.float32)
            return SlideMap(str(slide.path), empty, plan.downsample, plan.map_mpp)
        normalizer = self.stain_normalizer  # with one, ``tissue`` was computed above when not given
        stain = None if normalizer is None or tissue is None else self._fit_stain(normalizer, slide, tissue, thumb)
        merger = self._merger(shape, plan)
        self.network.eval()
        loader = self._windows(slide, plan)
        hc, tc = plan.halo_cells, plan.tile_cells
        expected = plan.window // plan.stride
        unread: list[tuple[int, int, int, int]] = []
        unread_tiles: list[tuple[int, int, int, int]] = []
        kept0 = tc * plan.downsample  # level-0 side of a tile's kept part
        for batch, index, ok in _progress(loader, self.progress, slide.path.name):
            if stain is not None:  # on the uint8 batch, on the device: one slide-wide map, so no seams
                batch = stain(batch.to(self.device, non_blocking=True))
            with self.precision.autocast():
                logits = self.network(self.precision.inputs(self.preprocess(batch))).float()
            if tuple(logits.shape[1:]) != (self.num_classes, expected, expected):
                raise ValueError(
                    f"{slide.path}: the network maps a {plan.window} px window to {tuple(logits.shape[1:])}, "
                    f"expected ({self.num_classes}, {expected}, {expected}) from num_classes={self.num_classes} "
                    f"and stride={plan.stride}; check the network's output stride and channels in the config"
                )
            probs = self._activate(logits)[:, :, hc : hc + tc, hc : hc + tc].cpu()
            for k in range(len(index)):
                i = int(index[k])
                cx, cy = (int(v) for v in plan.cells[i])
                if not bool(ok[k]):
                    ox, oy = (int(v) for v in plan.origins[i])
                    side0 = plan.window * plan.downsample // plan.stride
                    unread.append((ox, oy, side0, side0))
                    unread_tiles.append((cx * plan.downsample, cy * plan.downsample, kept0, kept0))
                    continue
                merger.aggregate(probs[k : k + 1], (cy, cx))  # spatial location only
        values = np.asarray(merger.finalize())[0]
        if unread:
            logger.warning("%s: %d windows could not be read; their cells are no-data", slide.path, len(unread))
        return SlideMap(str(slide.path), values.astype(np.float32, copy=False), plan.downsample, plan.map_mpp, unread,
                        unread_tiles)

    def _windows(self, slide: Slide, plan: TilePlan) -> Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches ``(uint8 windows, plan indices, read ok)`` of ``plan``, decoded as ``decode`` says."""
        if self.decode == "device":
            from monai_wsseg.inference.device_decode import DeviceWindows

            return DeviceWindows(slide, plan, self.batch_size, self.device)
        return DataLoader(
            TileWindows(slide, plan),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.num_workers else None,
        )

    @staticmethod
    def _fit_stain(normalizer: ReinhardNormalizer | MacenkoNormalizer, slide: Slide, tissue: TissueMask,
                   thumb: np.ndarray | None) -> Callable[[torch.Tensor], torch.Tensor]:
        from monai_wsseg.wsi.stain import fit_slide_stain

        return fit_slide_stain(normalizer, slide, tissue, thumb)

    def _merger(self, shape: tuple[int, ...], plan: TilePlan):
        """In-memory ``AvgMerger`` sized to hold the last tiles, or ``ZarrAvgMerger`` above the budget."""
        padded = (*shape[:2], shape[2] + plan.tile_cells, shape[3] + plan.tile_cells)
        if math.prod(padded) * 5 / 2**20 <= self.memory_budget_mb:  # float32 values + uint8 counts
            return AvgMerger(merged_shape=padded, cropped_shape=shape, count_dtype=torch.int32)
        from monai.inferers import ZarrAvgMerger

        chunk = (1, shape[1], max(plan.tile_cells, 256), max(plan.tile_cells, 256))
        return ZarrAvgMerger(merged_shape=padded, cropped_shape=shape, value_chunks=chunk, count_chunks=chunk)


def _progress(loader: Iterable[Any], enabled: bool, name: str) -> Iterable[Any]:
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=name, unit="batch", leave=False)
