"""Randomness of the synthetic tissue: hashes of grid cells and smooth random fields on a coarse grid.

:func:`cell_uniforms` gives uniforms that depend only on a key and a cell, so any block of a slide can
regenerate the random draws of the cells it overlaps; :func:`smooth_noise` makes zero-mean smooth fields,
and :class:`CoarseGrid` holds such fields on nodes spaced a few pixels apart and samples them bilinearly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["CoarseGrid", "cell_uniforms", "mix_int", "smooth_noise"]

_M64 = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15


def mix_int(z: int) -> int:
    """A 64-bit integer hash of ``z`` (splitmix64's finaliser): derives keys from keys."""
    z = (z + _GOLD) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z + np.uint64(_GOLD)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def cell_uniforms(key: int, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """(n, len(i)) uniforms in [0, 1) that depend only on (key, i, j): same cell, same nucleus."""
    with np.errstate(over="ignore"):
        base = _mix((i.astype(np.int64) + (1 << 24)).astype(np.uint64) * np.uint64(0x100000001B3)
                    ^ (j.astype(np.int64) + (1 << 24)).astype(np.uint64) ^ np.uint64(key))
        out = np.empty((n, i.size), np.float64)
        for f in range(n):
            out[f] = (_mix(base + np.uint64(((f + 1) * 0x632BE59BD9B4E019) & _M64)) >> np.uint64(11)) * 2.0**-53
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean unit-std random field with correlation length ``scale`` nodes (float32)."""
    step = max(1.0, scale / 4.0)
    small = (math.ceil(shape[0] / step) + 4, math.ceil(shape[1] / step) + 4)
    field = ndimage.gaussian_filter(rng.standard_normal(small), scale / step, mode="wrap")
    if step > 1:
        field = ndimage.zoom(field, step, order=1)
    field = field[: shape[0], : shape[1]]
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


class CoarseGrid:
    """Smooth fields on nodes spaced ``cell`` px; node (i, j) sits at pixel (x0 + j*cell, y0 + i*cell)."""

    def __init__(self, x0: float, y0: float, cell: int, shape: tuple[int, int]):
        self.x0, self.y0, self.cell, self.shape = x0, y0, cell, shape
        self.fields: dict[str, np.ndarray] = {}

    def _coords(self, x, y):
        gx = np.clip((np.asarray(x, np.float64) - self.x0) / self.cell, 0, self.shape[1] - 1.000001)
        gy = np.clip((np.asarray(y, np.float64) - self.y0) / self.cell, 0, self.shape[0] - 1.000001)
        return gx, gy

    def at(self, name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Field ``name`` bilinearly interpolated at pixels ``(x, y)`` (arrays of one shape), as float32."""
        f = self.fields[name]
        gx, gy = self._coords(x, y)
        j, i = gx.astype(np.int64), gy.astype(np.int64)
        tx, ty = gx - j, gy - i
        top = f[i, j] * (1 - tx) + f[i, j + 1] * tx
        bottom = f[i + 1, j] * (1 - tx) + f[i + 1, j + 1] * tx
        return (top * (1 - ty) + bottom * ty).astype(np.float32)

    def bounds(self, name: str, x0: int, y0: int, w: int, h: int) -> tuple[float, float]:
        """(min, max) of a field over a block: bilinear samples never leave the nodes' range."""
        gx0, gy0 = self._coords(x0, y0)
        gx1, gy1 = self._coords(x0 + w - 1, y0 + h - 1)
        crop = self.fields[name][int(gy0) : int(gy1) + 2, int(gx0) : int(gx1) + 2]
        return float(crop.min()), float(crop.max())

    def dense(self, name: str, x0: int, y0: int, w: int, h: int, step: int = 1) -> np.ndarray:
        """(h, w) float32 bilinear samples at the pixel centres of a block; ``step`` > 1 samples
        every ``step`` pixels and repeats (for fields too smooth to need more)."""
        xs = np.arange(x0, x0 + w, step, dtype=np.float64) + (step - 1) / 2
        ys = np.arange(y0, y0 + h, step, dtype=np.float64) + (step - 1) / 2
        gx, gy = self._coords(xs, ys)
        i = gy.astype(np.int64)
        i_lo = i.min()
        j0 = int(gx[0])
        crop = self.fields[name][i_lo : i.max() + 2, j0:].astype(np.float32, copy=False)
        wy = np.zeros((ys.size, crop.shape[0]), np.float32)
        rows = np.arange(ys.size)
        wy[rows, i - i_lo] = 1 - (gy - i)
        wy[rows, i - i_lo + 1] = gy - i
        # Columns: sample positions repeat the same fractions in every cell, so interpolate one
        # (rows, cells, samples-per-cell) array by broadcasting instead of gathering columns.
        per = self.cell / step
        lead = int((gx[0] - j0) * per + 1e-6)  # samples of the first cell that lie before x0
        n_cells = math.ceil((lead + xs.size) / per) if per == int(per) else 0
        if n_cells and n_cells + 1 <= crop.shape[1] and gx[-1] < self.shape[1] - 1.000001 and gx[0] > 0:
            part = wy @ crop[:, : n_cells + 1]
            t = (gx[0] - j0 - lead / per + np.arange(int(per)) / per).astype(np.float32)
            left, right = part[:, :-1, None], part[:, 1:, None]
            out = (left + (right - left) * t).reshape(ys.size, -1)[:, lead : lead + xs.size]
        else:  # edge of the grid or a non-integer ratio: plain gather
            part = wy @ crop
            j = gx.astype(np.int64) - j0
            tx = (gx - j0 - j).astype(np.float32)
            left, right = part[:, j], part[:, np.minimum(j + 1, crop.shape[1] - 1)]
            out = left + (right - left) * tx
        if step > 1:
            out = np.repeat(np.repeat(out, step, axis=0), step, axis=1)[:h, :w]
        return np.ascontiguousarray(out, dtype=np.float32)
