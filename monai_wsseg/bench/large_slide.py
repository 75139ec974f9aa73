"""Write a huge synthetic pyramidal JPEG TIFF (e.g. 100,000 × 100,000 px) without ever holding a level in memory.

The slide is a mosaic of 256 px cells. A low-resolution *layout* (one entry per cell, i.e. 1/256 scale)
says which cells are glass and which texture every tissue cell shows: a few irregular blobs (a smoothed
noise field thresholded at the quantile that gives the requested tissue fraction) split into texture
regions (Voronoi cells). A handful of 256 × 256 H&E-like textures are rendered once
(:func:`monai_wsseg.synthetic.generator.render_texture`, or simple numpy textures when it is unavailable).

Level 0 is then a sequence of tiles each equal to one texture or to white glass, so every distinct tile
is JPEG-encoded once and tifffile is handed the encoded bytes (it writes an iterator of pre-encoded
segments as is): writing is I/O bound. Reduced levels (2×, 4×, ... until the longest side is below
``min_level_size``) are built from the same layout: a level-``2^k`` tile is the mosaic of the
``2^k``-times area-reduced textures of the cells it covers, so it is the exact area-average of level 0
(up to JPEG), and tiles that cover a single texture (most of them) are encoded once per texture.

The file is a generic tiled TIFF as :mod:`monai_wsseg.wsi.tiff_writer` writes it: every level a tiled
top-level page, reduced levels ``subfiletype=1``, photometric RGB, resolution tags in pixels per cm. It is
written atomically (:func:`~monai_wsseg.utils.atomic.write_atomically`). ``scripts/make_large_slide.py`` is
its command line; :mod:`.large_inference` benchmarks whole-slide inference on such a slide.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import tifffile
from scipy import ndimage

from monai_wsseg.utils.atomic import write_atomically

__all__ = ["CELL", "LargeSlide", "check_slide", "level_shapes", "make_large_slide", "make_textures", "tissue_layout"]

CELL = 256  # level-0 pixels per layout cell = TIFF tile size
_GLASS = 255
_KINDS = ("tumor", "stroma", "lymphoid", "tumor_stroma", "necrosis")


@dataclass
class LargeSlide:
    """What :func:`make_large_slide` wrote.

    Attributes:
        path: the slide file.
        width, height: level-0 size in pixels.
        mpp: level-0 microns per pixel.
        level_shapes: ``(height, width)`` of every level, level 0 first.
        tissue_fraction: fraction of the slide's area drawn as tissue (from the layout).
        layout: ``(ceil(h / 256), ceil(w / 256))`` uint8 cell map, 0 = glass, ``k ≥ 1`` = texture ``k - 1``.
        tiles: tiles written, all levels.
        encoded: JPEG encodings performed (the rest were reused bytes).
        file_bytes: size of the file.
        seconds: wall time of the whole write.
        level_seconds: wall time per level.
    """

    path: str
    width: int
    height: int
    mpp: float
    level_shapes: list[tuple[int, int]]
    tissue_fraction: float
    layout: np.ndarray = field(repr=False)
    tiles: int = 0
    encoded: int = 0
    file_bytes: int = 0
    seconds: float = 0.0
    level_seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-able fields (the layout left out)."""
        out = asdict(self)
        out.pop("layout")
        out["level_shapes"] = [list(s) for s in self.level_shapes]
        return out


# ---------------------------------------------------------------------------------------------------------
# layout and textures
# ---------------------------------------------------------------------------------------------------------
def tissue_layout(
    grid_h: int, grid_w: int, *, tissue_fraction: float, n_textures: int, seed: int,
    cell_weights: np.ndarray | None = None,
) -> np.ndarray:
    """``(grid_h, grid_w)`` uint8 cell map: 0 glass, ``1..n_textures`` a texture.

    Tissue is a few irregular blobs: Gaussian-smoothed white noise, pushed down near the border so blobs
    stay inside the slide, thresholded at the (area-weighted) quantile giving ``tissue_fraction``.
    """
    if not 0.0 <= tissue_fraction <= 1.0:
        raise ValueError(f"tissue_fraction must be in [0, 1], got {tissue_fraction}")
    rng = np.random.default_rng([int(seed), 11])
    weights = np.ones((grid_h, grid_w)) if cell_weights is None else cell_weights
    field_ = ndimage.gaussian_filter(rng.standard_normal((grid_h, grid_w)), sigma=max(grid_h, grid_w) / 12, mode="wrap")
    field_ = (field_ - field_.mean()) / (field_.std() + 1e-12)
    v = np.linspace(-1, 1, grid_h)[:, None]
    u = np.linspace(-1, 1, grid_w)[None, :]
    field_ -= 3.0 * np.maximum(np.abs(u), np.abs(v)) ** 8  # keep the blobs off the edges
    tissue = np.zeros((grid_h, grid_w), bool)
    if tissue_fraction > 0:
        order = np.argsort(field_, axis=None)[::-1]
        cum = np.cumsum(weights.ravel()[order])
        target = tissue_fraction * cum[-1]
        n = int(np.searchsorted(cum, target))  # the first n cells fall short of the target area
        if n < order.size and (n == 0 or cum[n] - target <= target - cum[n - 1]):
            n += 1  # whichever of n, n + 1 cells comes closer
        tissue.flat[order[:n]] = True
    # Texture regions: Voronoi cells of random seeds, about 20 × 20 cells each.
    n_seeds = max(4, grid_h * grid_w // 400)
    seeds = rng.uniform((0, 0), (grid_h, grid_w), size=(n_seeds, 2))
    labels = rng.integers(1, n_textures + 1, size=n_seeds)
    from scipy.spatial import cKDTree

    yy, xx = np.mgrid[0:grid_h, 0:grid_w]
    _, nearest = cKDTree(seeds).query(np.stack([yy.ravel() + 0.5, xx.ravel() + 0.5], axis=1))
    layout = labels[nearest].reshape(grid_h, grid_w).astype(np.uint8)
    layout[~tissue] = 0
    return layout


def _numpy_texture(rng: np.random.Generator, size: int = CELL) -> np.ndarray:
    """A simple H&E-like tile: pink eosin background with purple nuclei (fallback texture)."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform((225, 150, 190), (240, 175, 215))
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), 3, mode="wrap")
    img += noise[..., None] * 40
    yy, xx = np.mgrid[0:size, 0:size]
    for cy, cx, r in zip(rng.uniform(0, size, 60), rng.uniform(0, size, 60), rng.uniform(3, 7, 60), strict=True):
        d2 = (np.minimum(np.abs(yy - cy), size - np.abs(yy - cy)) ** 2
              + np.minimum(np.abs(xx - cx), size - np.abs(xx - cx)) ** 2)
        img[d2 < r * r] = (90, 50, 140)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_textures(n: int, *, seed: int, mpp: float) -> np.ndarray:
    """``(n, 256, 256, 3)`` uint8 tissue textures."""
    out = np.empty((n, CELL, CELL, 3), np.uint8)
    render_texture: Callable[..., np.ndarray] | None
    try:
        from monai_wsseg.synthetic.generator import render_texture
    except ImportError:
        render_texture = None
    rng = np.random.default_rng([int(seed), 13])
    for i in range(n):
        tile = None
        if render_texture is not None:
            try:
                tile = render_texture(_KINDS[i % len(_KINDS)], CELL, seed=int(seed) * 1000 + i, mpp=mpp)
            except (ValueError, TypeError):
                tile = None
        out[i] = tile if tile is not None else _numpy_texture(rng)
    return out


def _reduce(textures: np.ndarray, s: int) -> np.ndarray:
    """``(n, 256 / s, 256 / s, 3)`` area-reduced textures (``s`` a power of two ≤ 256)."""
    n, c = len(textures), CELL // s
    return textures.reshape(n, c, s, c, s, 3).mean(axis=(2, 4)).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------
def level_shapes(height: int, width: int, min_level_size: int = 1024) -> list[tuple[int, int]]:
    """Level 0, then halvings (rounding up) while the last level's longest side is ≥ ``min_level_size``."""
    shapes = [(int(height), int(width))]
    while max(shapes[-1]) >= min_level_size and max(shapes[-1]) > 1:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


class _Encoder:
    """JPEG-encodes tiles exactly as tifffile does for ``photometric="rgb", compression="jpeg"``."""

    def __init__(self, quality: int) -> None:
        self.quality, self.count = int(quality), 0
        # tifffile's own arguments for these options (checked against its output in the tests).
        self.args: dict[str, Any] = dict(level=self.quality, colorspace="RGB", outcolorspace="RGB", subsampling=(2, 2))

    def __call__(self, tile: np.ndarray) -> bytes:
        self.count += 1
        return bytes(imagecodecs.jpeg_encode(np.ascontiguousarray(tile), **self.args))


def _level_tiles(layout: np.ndarray, textures: np.ndarray, shape: tuple[int, int], s: int,
                 encode: _Encoder) -> Iterator[bytes]:
    """Encoded tiles of the level ``s`` times smaller than level 0, row by row."""
    h, w = shape
    ntr, ntc = math.ceil(h / CELL), math.ceil(w / CELL)
    white = np.full((1, CELL, CELL, 3), _GLASS, np.uint8)
    if s <= CELL:
        small = np.concatenate([white, textures])
        small = small if s == 1 else _reduce(small, s)  # (n + 1, c, c, 3), index 0 = glass
        ids = np.zeros((ntr * s, ntc * s), np.uint8)  # cells covered by the level's tiles, glass beyond
        gh, gw = min(layout.shape[0], ids.shape[0]), min(layout.shape[1], ids.shape[1])
        ids[:gh, :gw] = layout[:gh, :gw]
        blocks = ids.reshape(ntr, s, ntc, s)
        lo, hi = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
        uniform: dict[int, bytes] = {}
        for r in range(ntr):
            for q in range(ntc):
                if lo[r, q] == hi[r, q]:
                    key = int(lo[r, q])
                    if key not in uniform:
                        uniform[key] = encode(np.tile(small[key], (s, s, 1)))
                    yield uniform[key]
                else:
                    block = blocks[r, :, q, :]  # (s, s) cell ids
                    yield encode(small[block].transpose(0, 2, 1, 3, 4).reshape(CELL, CELL, 3))
    else:  # a level coarser than one cell per pixel (slides over 262,144 px): nearest cell's mean colour
        means = np.concatenate([white, textures]).reshape(len(textures) + 1, -1, 3).mean(axis=1).astype(np.uint8)
        for r in range(ntr):
            ys = np.minimum((np.arange(r * CELL, (r + 1) * CELL) * s) // CELL, layout.shape[0] - 1)
            for q in range(ntc):
                xs = np.minimum((np.arange(q * CELL, (q + 1) * CELL) * s) // CELL, layout.shape[1] - 1)
                yield encode(means[layout[np.ix_(ys, xs)]])


def make_large_slide(
    path: str | os.PathLike,
    width: int = 100_000,
    height: int = 100_000,
    *,
    mpp: float = 0.5,
    tissue_fraction: float = 0.3,
    seed: int = 0,
    quality: int = 80,
    n_textures: int = 6,
    min_level_size: int = 1024,
    progress: bool = False,
) -> LargeSlide:
    """Write a synthetic pyramidal JPEG TIFF of ``width × height`` px; memory stays a few MB whatever the size.

    Args:
        path: output file (its folder must exist); written under a temporary name, then renamed.
        width, height: level-0 size in pixels.
        mpp: level-0 microns per pixel (stored in the resolution tags, pixels per cm).
        tissue_fraction: fraction of the slide area drawn as tissue.
        seed: layout and texture seed.
        quality: JPEG quality 1..100.
        n_textures: distinct 256 px tissue textures.
        min_level_size: reduced levels are added until the longest side is below this.
        progress: print one line per level.

    Returns:
        A :class:`LargeSlide` describing the file.
    """
    path = Path(path)
    if width < 1 or height < 1:
        raise ValueError(f"{path}: width and height must be ≥ 1, got {width} × {height}")
    if not (mpp > 0 and math.isfinite(mpp)):
        raise ValueError(f"{path}: mpp must be a positive number, got {mpp!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"{path}: quality must be in 1..100, got {quality}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: output folder {path.parent} does not exist")
    start = time.perf_counter()
    gh, gw = math.ceil(height / CELL), math.ceil(width / CELL)
    # Area of each cell inside the slide (edge cells are partial), so the fraction is one of pixels.
    ch = np.minimum(CELL, height - np.arange(gh) * CELL)
    cw = np.minimum(CELL, width - np.arange(gw) * CELL)
    area = ch[:, None].astype(np.float64) * cw[None, :]
    layout = tissue_layout(gh, gw, tissue_fraction=tissue_fraction, n_textures=n_textures, seed=seed,
                           cell_weights=area)
    fraction = float(area[layout > 0].sum() / area.sum())
    textures = make_textures(n_textures, seed=seed, mpp=mpp)
    shapes = level_shapes(height, width, min_level_size)
    encode = _Encoder(quality)
    tiles = 0
    level_seconds = []
    # Classic TIFF offsets are 32-bit: a compressed file can pass 4 GiB from ~2.5e9 px on.
    bigtiff = width * height * 3 > 2**31

    def write(tmp: Path) -> None:
        nonlocal tiles
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as writer:
            for k, (h, w) in enumerate(shapes):
                t0 = time.perf_counter()
                s = 2**k
                ppcm = 1e4 / (mpp * s)
                writer.write(
                    _level_tiles(layout, textures, (h, w), s, encode),
                    shape=(h, w, 3), dtype=np.uint8, tile=(CELL, CELL), photometric="rgb", compression="jpeg",
                    compressionargs={"level": int(quality), "outcolorspace": "RGB"}, resolution=(ppcm, ppcm),
                    resolutionunit="CENTIMETER", subfiletype=1 if k else 0, metadata=None,
                )
                tiles += math.ceil(h / CELL) * math.ceil(w / CELL)
                level_seconds.append(time.perf_counter() - t0)
                if progress:
                    print(f"level {k}: {w} x {h} px, {level_seconds[-1]:.1f} s, {tmp.stat().st_size / 2**30:.2f} GiB",
                          flush=True)

    write_atomically(path, write)
    return LargeSlide(
        path=str(path), width=int(width), height=int(height), mpp=float(mpp), level_shapes=shapes,
        tissue_fraction=fraction, layout=layout, tiles=tiles, encoded=encode.count,
        file_bytes=path.stat().st_size, seconds=time.perf_counter() - start, level_seconds=level_seconds,
    )


def check_slide(path: str | os.PathLike, info: LargeSlide,
                backends: tuple[str, ...] = ("tifffile", "openslide")) -> dict:
    """Open the slide with each backend (size, mpp, levels) and compute its tissue mask with the first one.

    Returns:
        ``{backend: {"dimensions", "mpp", "levels", "ok"}, "tissue_mask_fraction", "tissue_mask_seconds"}``;
        ``ok`` is whether the backend reads ``info``'s size, mpp and level count.
    """
    from monai_wsseg.wsi.slide import available_backends, open_slide
    from monai_wsseg.wsi.tissue import compute_tissue_mask

    out: dict = {}
    for backend in backends:
        if backend != "tifffile" and backend not in available_backends():
            continue
        slide = open_slide(path, backend=backend)
        out[backend] = {"dimensions": list(slide.dimensions), "mpp": slide.mpp, "levels": slide.level_count,
                        "ok": slide.dimensions == (info.width, info.height) and abs(slide.mpp - info.mpp) < 1e-6
                        and slide.level_count == len(info.level_shapes)}
        if "tissue_mask_fraction" not in out:
            t0 = time.perf_counter()
            out["tissue_mask_fraction"] = compute_tissue_mask(slide).fraction
            out["tissue_mask_seconds"] = time.perf_counter() - t0
        slide.close()
    return out

