"""Plan the tiles of a whole-slide map: which input windows to read and where their outputs land.

Terms (all integers, pixels):

* ``stride`` — input pixels per output cell of the network (its output stride; 1 for a network whose
  output has the size of its input, ``patch_size`` for a patch classifier with one output per patch).
* ``tile`` — input pixels of the part of a window whose outputs are kept (a multiple of ``stride``).
* ``halo`` — input pixels read around that part and cropped from the output, at least the network's
  receptive-field radius, so a fully convolutional network's map does not depend on where tiles cut it.
* ``downsample`` — level-0 slide pixels per map cell, an integer, so the map overlays the slide exactly.

The input resolution is adjusted (by at most a few per cent) so that ``downsample`` is an integer:
``mpp_in = downsample · slide.mpp / stride``. When a stored level lies within 5 % of the requested mpp,
that level is read as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monai_wsseg.wsi.slide import MPP_RTOL, Slide
from monai_wsseg.wsi.tissue import TissueMask

__all__ = ["TilePlan", "check_tile_settings", "plan_tiles"]


@dataclass(frozen=True)
class TilePlan:
    """Where each tile of one slide is read and where its output lands.

    Attributes:
        mpp: input microns per pixel actually read (see the module docstring).
        stride, tile, halo: as in the module docstring, input pixels.
        downsample: level-0 pixels per map cell.
        map_size: ``(width, height)`` of the map in cells; it covers the whole slide.
        cells: ``(N, 2)`` int64 map-cell ``(x, y)`` of each tile's top-left kept cell.
        origins: ``(N, 2)`` int64 level-0 ``(x, y)`` of each tile's input window (halo included).
    """

    mpp: float
    stride: int
    tile: int
    halo: int
    downsample: int
    map_size: tuple[int, int]
    cells: np.ndarray
    origins: np.ndarray

    @property
    def window(self) -> int:
        """Input pixels per side of a window read for one tile."""
        return self.tile + 2 * self.halo

    @property
    def tile_cells(self) -> int:
        """Map cells per side of a tile's kept output."""
        return self.tile // self.stride

    @property
    def halo_cells(self) -> int:
        """The halo in map cells."""
        return self.halo // self.stride

    @property
    def map_mpp(self) -> float:
        """Microns per map cell."""
        return self.mpp * self.stride

    def __len__(self) -> int:
        return len(self.cells)


def check_tile_settings(where: str, *, mpp: float, stride: int, tile: int, halo: int, overlap: float) -> None:
    """Raise ``ValueError`` starting with ``where`` when the tiling settings cannot work (see :func:`plan_tiles`)."""
    if stride < 1 or tile < stride or tile % stride or halo < 0 or halo % stride:
        raise ValueError(
            f"{where}: tile ({tile}) and halo ({halo}) must be multiples of the network stride ({stride}), "
            "tile ≥ stride"
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"{where}: overlap must be in [0, 1) (a fraction of a tile shared with its neighbour), "
                         f"got {overlap}")
    if not mpp > 0:
        raise ValueError(f"{where}: mpp must be positive, got {mpp}")


def plan_tiles(
    slide: Slide,
    *,
    mpp: float,
    stride: int,
    tile: int,
    halo: int = 0,
    overlap: float = 0.0,
    tissue: TissueMask | None = None,
) -> TilePlan:
    """Tiles covering the tissue of a slide.

    Args:
        slide: the slide (its ``path``, ``dimensions``, ``mpp`` and ``level_mpps`` are used).
        mpp: requested input microns per pixel; a stored level within 5 % of it is used as it is.
        stride: network output stride (input pixels per output cell).
        tile: kept input pixels per tile side; a multiple of ``stride``.
        halo: input pixels read on each side and cropped away; a multiple of ``stride``.
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)`` (outputs are averaged).
        tissue: when given, tiles whose footprint holds no tissue are left out (and never read).

    Raises:
        ValueError: inconsistent sizes or overlap, naming the slide.
    """
    check_tile_settings(str(slide.path), mpp=mpp, stride=stride, tile=tile, halo=halo, overlap=overlap)
    stored = [m for m in slide.level_mpps if abs(m - mpp) <= MPP_RTOL * mpp]
    if stored:  # read that level as it is, and size the map from it
        mpp = min(stored, key=lambda m: abs(m - mpp))
    downsample = max(1, round(mpp * stride / slide.mpp))
    mpp_in = downsample * slide.mpp / stride
    w0, h0 = slide.dimensions
    map_w, map_h = math.ceil(w0 / downsample), math.ceil(h0 / downsample)
    tile_cells = tile // stride
    step = max(1, round(tile_cells * (1.0 - overlap)))
    xs = _starts(map_w, tile_cells, step)
    ys = _starts(map_h, tile_cells, step)
    cells = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2).astype(np.int64)
    if tissue is not None and len(cells):
        side0 = tile_cells * downsample
        keep = tissue.region_fraction(cells[:, 0] * downsample, cells[:, 1] * downsample, side0, side0) > 0
        cells = cells[np.atleast_1d(keep)]
    halo0 = halo * downsample // stride  # level-0 pixels of the halo; exact since halo % stride == 0
    origins = cells * downsample - halo0
    return TilePlan(mpp_in, stride, tile, halo, downsample, (map_w, map_h), cells, origins.astype(np.int64))


def _starts(length: int, size: int, step: int) -> np.ndarray:
    """Tile starts covering ``[0, length)``; the last tile is shifted back to end at the border when it fits."""
    if length <= size:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - size + 1, step, dtype=np.int64)
    if starts[-1] + size < length:
        starts = np.append(starts, length - size)
    return starts

