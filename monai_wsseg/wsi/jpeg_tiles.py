"""Read a pyramid level's JPEG tiles as compressed bytes and decode them in batches, on a GPU when asked.

On a GPU, ResNet50 consumes ~280 Mpx/s (H200, fp16) while one CPU core decodes JPEG tiles at ~50–70 Mpx/s
(``scripts/bench_decode.py``), so DataLoader workers that decode on the CPU need 4–6 cores per GPU just to
keep up. :class:`JpegTiles` moves the decode to the device: workers (or the main process) only read the
tiles' bytes from the TIFF — a seek and a read each — and ``torchvision.io.decode_jpeg`` decodes a whole
batch of them with nvJPEG on CUDA (libjpeg-turbo on a CPU, the same library OpenSlide uses).

Tiles are made complete JPEG streams first: the level's shared ``JPEGTables`` (Aperio, most scanners) are
spliced in, and for RGB-coded tiles (TIFF photometric RGB, which JPEG itself cannot say) an Adobe APP14
marker with transform 0 is added, so a decoder does not apply a YCbCr conversion the encoder never made. On
the CPU the result equals OpenSlide's pixels exactly (tested on the shared Aperio SVS and on the project's
pyramids).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
import torch

__all__ = ["JpegTiles"]

_JPEG = 7  # TIFF compression code of "new-style" JPEG
_RGB = 2  # TIFF photometric RGB
# APP14 "Adobe" segment, version 100, flags 0, transform 0 (components are RGB, not YCbCr)
_ADOBE_RGB = bytes([0xFF, 0xEE, 0x00, 0x0E]) + b"Adobe" + bytes([0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00])


class JpegTiles:
    """The JPEG tiles of one level of a tiled TIFF (SVS, generic pyramidal TIFF).

    Args:
        path: the slide file.
        level: pyramid level (0 = full resolution) of the file's main image series.

    Attributes:
        tile: ``(height, width)`` of a tile in pixels; grid: ``(rows, columns)`` of tiles;
        shape: ``(height, width)`` of the level in pixels.

    Raises:
        ValueError: the file is not a tiled TIFF, the level does not exist, or its tiles are not JPEG
            (the message names the file and the compression found).
    """

    def __init__(self, path: str | os.PathLike, level: int = 0) -> None:
        self.path = Path(path)
        try:
            with tifffile.TiffFile(self.path) as tf:
                series = tf.series[0]
                levels = list(series.levels) if series.levels else [series]
                if not 0 <= level < len(levels):
                    raise ValueError(f"{self.path}: level {level} does not exist (the slide has {len(levels)})")
                page = levels[level].keyframe
                compression, photometric = int(page.compression), int(page.photometric)
                tiled = bool(page.is_tiled)
                self.tile = (int(page.tilelength), int(page.tilewidth))
                self.shape = (int(page.imagelength), int(page.imagewidth))
                self._offsets = np.asarray(page.dataoffsets, dtype=np.int64)
                self._counts = np.asarray(page.databytecounts, dtype=np.int64)
                tables = page.jpegtables
        except (OSError, tifffile.TiffFileError) as exc:
            raise ValueError(f"{self.path}: not a readable TIFF ({type(exc).__name__}: {exc})") from None
        if not tiled or compression != _JPEG:
            raise ValueError(f"{self.path}: level {level} is not JPEG-tiled (compression {compression}, "
                             f"{'tiled' if tiled else 'stripped'}); read it through the slide backends instead")
        self.grid = (-(-self.shape[0] // self.tile[0]), -(-self.shape[1] // self.tile[1]))
        head = _ADOBE_RGB if photometric == _RGB else b""
        self._prefix = b"\xff\xd8" + head + (bytes(tables)[2:-2] if tables else b"")
        self._fh: tifffile.FileHandle | None = None
        self._pid = -1

    def _file(self) -> tifffile.FileHandle:
        if self._fh is None or self._pid != os.getpid():  # one handle per process (DataLoader workers)
            self._fh, self._pid = tifffile.FileHandle(str(self.path)), os.getpid()
        return self._fh

    def stream(self, row: int, column: int) -> bytes:
        """The complete JPEG stream of tile ``(row, column)``."""
        index = row * self.grid[1] + column
        fh = self._file()
        fh.seek(int(self._offsets[index]))
        data = fh.read(int(self._counts[index]))
        if data[:2] != b"\xff\xd8":
            raise ValueError(f"{self.path}: tile ({row}, {column}) is not a JPEG stream")
        return self._prefix + data[2:]

    def decode(self, tiles: Sequence[tuple[int, int]], device: str | torch.device = "cpu") -> list[torch.Tensor]:
        """Decode tiles ``(row, column)`` in one batch; ``(3, tile_h, tile_w)`` uint8 tensors on ``device``."""
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(self.stream(r, c)), dtype=torch.uint8) for r, c in tiles]
        if not data:
            return []
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=torch.device(device))

    def read(self, location: Sequence[int], size: Sequence[int], device: str | torch.device = "cpu") -> torch.Tensor:
        """Region ``(x, y)``, ``(width, height)`` in this level's pixels as a ``(3, h, w)`` uint8 tensor on
        ``device``; parts outside the level are white."""
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        th, tw = self.tile
        out = torch.full((3, h, w), 255, dtype=torch.uint8, device=torch.device(device))
        rows = range(max(0, y // th), min(self.grid[0], -(-(y + h) // th)))
        cols = range(max(0, x // tw), min(self.grid[1], -(-(x + w) // tw)))
        tiles = [(r, c) for r in rows for c in cols]
        for (r, c), tile in zip(tiles, self.decode(tiles, device), strict=True):
            # the tile's part inside both the region and the level (edge tiles are padded in the file)
            y0, y1 = max(y, r * th), min(y + h, (r + 1) * th, self.shape[0])
            x0, x1 = max(x, c * tw), min(x + w, (c + 1) * tw, self.shape[1])
            if y0 < y1 and x0 < x1:
                out[:, y0 - y : y1 - y, x0 - x : x1 - x] = tile[:, y0 - r * th : y1 - r * th, x0 - c * tw : x1 - c * tw]
        return out

    def close(self) -> None:
        """Close the file handle (a later read reopens it)."""
        if self._fh is not None and self._pid == os.getpid():
            self._fh.close()
        self._fh = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fh"], state["_pid"] = None, -1
        return state
