"""Write images as generic tiled pyramidal TIFFs that whole-slide readers open.

The layout is the one OpenSlide calls "generic tiled TIFF" and that cuCIM, tifffile and
tiffslide read as a pyramid: every level is a tiled *top-level* page, level 0 first, each reduced
level marked ``subfiletype=1``. Levels stored as SubIFDs (OME style) would hide the pyramid from
OpenSlide and cuCIM, which then see level 0 only.

Microns per pixel go into the standard resolution tags in centimetres (pixels per cm = 1e4 / mpp),
the unit OpenSlide turns into ``openslide.mpp-x`` / ``openslide.mpp-y``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from monai_wsseg.utils.atomic import write_atomically

__all__ = ["downsample2x", "pyramid_shapes", "write_pyramidal_tiff"]

_COMPRESSION = {"jpeg": "jpeg", "zlib": "zlib", "deflate": "zlib", "none": None, None: None}
_PHOTOMETRIC = {"rgb", "minisblack", "ycbcr"}
# Rows per slab when downsampling: bounds the temporary uint16 copy for huge (memmapped) levels.
_SLAB_ROWS = 1024
# Stay well under the 4 GiB offset limit of classic TIFF (uncompressed worst case).
_BIGTIFF_BYTES = 2**32 - 2**28


def pyramid_shapes(
    height: int, width: int, *, min_level_size: int = 512, min_levels_from: int = 2048
) -> list[tuple[int, int]]:
    """(height, width) in pixels of every pyramid level, level 0 first.

    Each level halves the previous one (rounding up). Levels are added while the last one's
    longest side is at least ``min_level_size``, so the smallest level is the first one below it;
    an image whose longest side is >= ``min_levels_from`` pixels always gets at least 3 levels.
    """
    shapes = [(int(height), int(width))]
    while True:
        h, w = shapes[-1]
        if max(h, w) <= 1:
            break
        need_more = max(height, width) >= min_levels_from and len(shapes) < 3
        if max(h, w) < min_level_size and not need_more:
            break
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def downsample2x(image: np.ndarray, *, resample: str = "area") -> np.ndarray:
    """Halve a (H, W) or (H, W, C) uint8 image; output is (ceil(H/2), ceil(W/2)[, C]) uint8.

    ``resample="area"`` averages each 2x2 block (an odd last row/column is averaged with
    itself); ``"nearest"`` keeps the top-left pixel of each block, which keeps label maps'
    values valid. Works slab by slab so a memory-mapped input is never loaded whole.
    """
    if resample not in ("area", "nearest"):
        raise ValueError(f"resample must be 'area' or 'nearest', got {resample!r}")
    h, w = image.shape[:2]
    out = np.empty(((h + 1) // 2, (w + 1) // 2, *image.shape[2:]), dtype=np.uint8)
    if resample == "nearest":
        for r0 in range(0, h, _SLAB_ROWS):
            out[r0 // 2 : (r0 + _SLAB_ROWS) // 2] = image[r0 : r0 + _SLAB_ROWS : 2, ::2]
        return out
    for r0 in range(0, h, _SLAB_ROWS):
        # Pillow's box reduce is the same 2x2 mean (edge blocks average the pixels they have),
        # several times faster than numpy sums; _SLAB_ROWS is even so slabs stay block-aligned.
        slab = np.ascontiguousarray(image[r0 : r0 + _SLAB_ROWS])
        reduced = np.asarray(Image.fromarray(slab).reduce(2))
        out[r0 // 2 : r0 // 2 + reduced.shape[0]] = reduced
    return out


def _validate(path: Path, image: np.ndarray, mpp: float, tile_size: int, compression, quality: int,
              photometric: str | None) -> tuple[str | None, str]:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{path}: image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: image dtype must be uint8, got {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"{path}: image must be (H, W) or (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{path}: image is empty, shape {image.shape}")
    if not (isinstance(mpp, (int, float, np.floating)) and np.isfinite(mpp) and mpp > 0):
        raise ValueError(f"{path}: mpp (microns per pixel) must be a positive number, got {mpp!r}")
    if tile_size < 16 or tile_size % 16:
        raise ValueError(f"{path}: tile_size must be a positive multiple of 16, got {tile_size}")
    key = compression.lower() if isinstance(compression, str) else compression
    if key not in _COMPRESSION:
        raise ValueError(f"{path}: compression must be 'jpeg', 'zlib', 'deflate' or None, "
                         f"got {compression!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"{path}: quality must be in 1..100, got {quality}")
    if photometric is None:
        photometric = "rgb" if image.ndim == 3 else "minisblack"
    photometric = photometric.lower()
    if photometric not in _PHOTOMETRIC:
        raise ValueError(f"{path}: photometric must be one of {sorted(_PHOTOMETRIC)}, got {photometric!r}")
    if (photometric == "minisblack") != (image.ndim == 2):
        raise ValueError(f"{path}: photometric {photometric!r} does not fit image shape {image.shape}")
    if photometric == "ycbcr" and _COMPRESSION[key] != "jpeg":
        raise ValueError(f"{path}: photometric 'ycbcr' needs compression='jpeg'")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: output folder {folder} is not writable")
    return _COMPRESSION[key], photometric


def write_pyramidal_tiff(
    path: str | os.PathLike,
    image: np.ndarray,
    mpp: float,
    *,
    tile_size: int = 256,
    compression: str | None = "jpeg",
    quality: int = 90,
    min_level_size: int = 512,
    photometric: str | None = None,
    resample: str = "area",
    maxworkers: int | None = None,
) -> Path:
    """Write ``image`` as a tiled pyramidal TIFF and return its path.

    Args:
        path: output file; its folder must exist. Written atomically
            (:func:`~monai_wsseg.utils.atomic.write_atomically`: a temporary file in the same folder,
            renamed when complete), so ``path`` never holds a partial file.
        image: (H, W, 3) RGB or (H, W) grey/label uint8 array of level 0; a ``np.memmap`` is
            read slab by slab rather than copied.
        mpp: microns per pixel of level 0; level k (k-times halved) is tagged ``mpp * 2**k``.
        tile_size: tile edge in pixels (multiple of 16).
        compression: ``"jpeg"`` (lossy, ``quality`` 1..100), ``"zlib"``/``"deflate"`` (lossless,
            for label maps and heatmaps) or ``None``.
        min_level_size: levels are added until the longest side drops below this; images with a
            longest side >= 2048 px always get at least 3 levels (see :func:`pyramid_shapes`).
        photometric: ``"rgb"`` (default for colour), ``"ycbcr"`` (JPEG with chroma subsampling,
            smaller files) or ``"minisblack"`` (default for 2-D).
        resample: ``"area"`` (2x2 mean) or ``"nearest"`` (for label maps) between levels.
        maxworkers: threads tifffile may use to compress tiles (None: its default).

    Raises:
        ValueError: bad dtype/shape/mpp/arguments or an unwritable folder (message names ``path``).
    """
    path = Path(path)
    codec, photometric = _validate(path, image, mpp, tile_size, compression, quality, photometric)
    if resample not in ("area", "nearest"):
        raise ValueError(f"{path}: resample must be 'area' or 'nearest', got {resample!r}")
    h, w = image.shape[:2]
    shapes = pyramid_shapes(h, w, min_level_size=min_level_size)
    raw_bytes = sum(a * b for a, b in shapes) * (image.shape[2] if image.ndim == 3 else 1)
    options: dict = dict(
        tile=(tile_size, tile_size),
        photometric="rgb" if photometric == "ycbcr" else photometric,
        compression=codec,
        resolutionunit="CENTIMETER",
        metadata=None,
        maxworkers=maxworkers,
    )
    if codec == "jpeg":
        options["compressionargs"] = {"level": int(quality)}
        if photometric == "rgb":
            # keep the JPEG streams in RGB so the PhotometricInterpretation tag says what they hold
            options["compressionargs"]["outcolorspace"] = "RGB"
            options["subsampling"] = None

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=raw_bytes > _BIGTIFF_BYTES) as writer:
            level = image
            for k, shape in enumerate(shapes):
                if k:
                    level = downsample2x(level, resample=resample)
                    assert level.shape[:2] == shape
                pixels_per_cm = 1e4 / (float(mpp) * 2**k)
                writer.write(level, resolution=(pixels_per_cm, pixels_per_cm),
                             subfiletype=1 if k else 0, **options)

    write_atomically(path, write)
    return path
