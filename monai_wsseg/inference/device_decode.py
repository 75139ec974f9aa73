"""A tile plan's windows decoded on the inferer's device: compressed JPEG tiles in, uint8 batches out.

On a GPU the network outruns CPU decoding (a ResNet50 FCN takes ~280 Mpx/s on an H200; one core decodes
~40–120 Mpx/s, ``scripts/bench_decode.py``). With ``WSIInferer(decode="device")`` no DataLoader worker
decodes: the main process reads each window's tiles as bytes (:class:`~monai_wsseg.wsi.jpeg_tiles.JpegTiles`,
a seek and a read per tile) and ``torchvision.io.decode_jpeg`` decodes them on the device (nvJPEG on CUDA,
libjpeg-turbo on a CPU), where the windows are assembled. The windows equal the slide backends' pixels
(on a CPU bit for bit, tested against OpenSlide), so the maps do too.

Only a stored level read as it is qualifies: the plan's input resolution must lie within 5 % of a level
(:data:`~monai_wsseg.wsi.slide.MPP_RTOL`), and that level must be JPEG-tiled in a TIFF (SVS, generic
pyramidal TIFF). Anything else is refused with the reason, naming the slide.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from monai_wsseg.inference.tiles import TilePlan
from monai_wsseg.wsi.jpeg_tiles import JpegTiles
from monai_wsseg.wsi.slide import MPP_RTOL, Slide

__all__ = ["DeviceWindows"]

logger = logging.getLogger(__name__)


class DeviceWindows:
    """Batches of a plan's input windows decoded on ``device``, as ``TileWindows`` in a DataLoader gives them.

    Iterating yields ``(batch, index, ok)``: ``(B, 3, window, window)`` uint8 on ``device``, the windows'
    plan indices ``(B,)`` and whether each was decoded ``(B,)`` bool — a window whose tiles cannot be read
    or decoded is zeros with ``ok`` False (the inferer marks its cells no-data and reports them).

    Args:
        slide: the slide the plan was made for.
        plan: the tile plan (:func:`~monai_wsseg.inference.tiles.plan_tiles`).
        batch_size: windows per batch.
        device: where tiles are decoded and windows assembled.

    Raises:
        ValueError: no stored level within 5 % of ``plan.mpp``, or that level is not JPEG-tiled in a TIFF.
    """

    def __init__(self, slide: Slide, plan: TilePlan, batch_size: int, device: str | torch.device) -> None:
        level = slide.level_for_mpp(plan.mpp)
        level_mpp = slide.level_mpps[level]
        if abs(level_mpp - plan.mpp) > MPP_RTOL * plan.mpp:
            stored = ", ".join(f"{m:.3g}" for m in slide.level_mpps)
            raise ValueError(f"{slide.path}: decoding on the device reads a stored level as it is, and no level lies "
                             f"within 5 % of {plan.mpp:.4g} um/px (levels: {stored} um/px); use decode='workers'")
        self.tiles = JpegTiles(slide.path, level)
        dims = slide.level_dimensions[level]
        if (self.tiles.shape[1], self.tiles.shape[0]) != tuple(dims):
            th, tw = self.tiles.shape
            raise ValueError(f"{slide.path}: level {level} of the TIFF is {tw} x {th} px, the slide reader's "
                             f"{dims[0]} x {dims[1]}; use decode='workers'")
        self.slide, self.plan, self.level = slide, plan, level
        self.batch_size, self.device = int(batch_size), torch.device(device)
        dx, dy = slide.level_downsamples[level]
        # the level-pixel origin of each window, rounded as Slide.read_level rounds it
        self.origins = np.stack([np.round(plan.origins[:, 0] / dx), np.round(plan.origins[:, 1] / dy)], axis=1)

    def __len__(self) -> int:
        return -(-len(self.plan) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        side = self.plan.window
        for start in range(0, len(self.plan), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(self.plan)))
            batch = torch.zeros((len(index), 3, side, side), dtype=torch.uint8, device=self.device)
            ok = torch.ones(len(index), dtype=torch.bool)
            for k, i in enumerate(index.tolist()):
                try:
                    batch[k] = self.tiles.read(self.origins[i], (side, side), self.device)
                except (OSError, RuntimeError, ValueError) as exc:  # decode_jpeg raises RuntimeError on bad data
                    x, y = (int(v) for v in self.plan.origins[i])
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    logger.warning("%s: cannot decode window x=%d, y=%d (%s)", self.slide.path, x, y, reason)
                    ok[k] = False
            yield batch, index, ok
