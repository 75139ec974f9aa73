"""Colour of the synthetic tissue: Beer-Lambert stains, per-kind stain amounts and tiling noise.

Each pixel holds a hematoxylin amount ``h`` and an eosin amount ``e`` (optical-density units), and
RGB = glass * 10**-(h * H_od + e * E_od) (:class:`Stain`); :func:`kind_tables` gives each tissue kind's
background amounts and texture strengths; :class:`NoiseBank` the pixel noise and grain, seamless across
rendered blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from monai_wsseg.synthetic.params import TextureParams

__all__ = ["NoiseBank", "Stain", "kind_tables"]

_LN10 = math.log(10.0)
_BANK = 1024  # side of the periodic noise images that blocks cut their noise from


def kind_tables(p: TextureParams) -> tuple[np.ndarray, ...]:
    """Per-kind background h, e, fibre contrast, fine and coarse granularity, pixel noise."""
    he = [(0.0, 0.004), p.stroma_he, p.gland_he, p.lymph_he, p.tumor_he, p.necrosis_he, p.tas_he, p.benign_he]
    h = np.array([x[0] for x in he], np.float32)
    e = np.array([x[1] for x in he], np.float32)
    #                  glass stroma gland lymph tumor necro  TAS  benign
    fibre = np.array([0.0, 0.65, 0.0, 0.0, 0.0, 0.0, 0.8, 0.0], np.float32)
    grain = np.array([0.0, 0.10, 0.20, 0.20, 0.22, 0.25, 0.10, 0.20], np.float32)
    blob = np.array([0.0, 0.15, 0.10, 0.10, 0.12, 0.45, 0.12, 0.10], np.float32)
    noise = np.array([0.35, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], np.float32) * p.pixel_noise
    return h, e, fibre, grain, blob, noise


class Stain:
    """Beer-Lambert colour of (h, e) stain amounts, with one random jitter per slide or patch."""

    def __init__(self, p: TextureParams, rng: np.random.Generator):
        j = p.stain_jitter
        hv = np.asarray(p.hematoxylin_od) * (1 + j * rng.standard_normal(3))
        ev = np.asarray(p.eosin_od) * (1 + j * rng.standard_normal(3))
        self.h_od = (hv * (1 + j * rng.standard_normal()) * _LN10).astype(np.float32)
        self.e_od = (ev * (1 + j * rng.standard_normal()) * _LN10).astype(np.float32)
        self.glass = (np.asarray(p.glass_rgb) + rng.uniform(-3, 3, 3)).astype(np.float32)
        if p.colour_cast > 0:  # drawn last, and only when asked: casts leave other slides' streams alone
            cast = np.clip(1 + p.colour_cast * rng.standard_normal(3), 0.5, 1.6).astype(np.float32)
            self.h_od *= cast
            self.e_od *= cast
        # exp() is the costliest step per pixel: tabulate intensity over natural-log OD instead
        od = np.arange(self._LEVELS) / self._PER_UNIT + self._OD_MIN
        self.lut = [np.clip(np.rint(g * np.exp(-od)), 0, 255).astype(np.uint8) for g in self.glass]

    _OD_MIN, _PER_UNIT, _LEVELS = -0.5, 1024.0, 8192  # OD range [-0.5, 7.5) in steps of 1/1024

    def rgb(self, h: np.ndarray, e: np.ndarray, out: np.ndarray, hue: Sequence[np.ndarray] | None = None) -> None:
        """Write uint8 RGB of (H, W) stain amounts into ``out`` (H, W, 3); ``hue``: optional
        per-channel relative OD changes, each (H, W) or scalar."""
        for c in range(3):
            t = h * (self.h_od[c] * self._PER_UNIT)
            t += e * (self.e_od[c] * self._PER_UNIT)
            if hue is not None:
                t *= 1 + hue[c]
            t += 0.5 - self._OD_MIN * self._PER_UNIT
            np.clip(t, 0, self._LEVELS - 1, out=t)
            out[..., c] = self.lut[c][t.astype(np.int32)]


class NoiseBank:
    """Periodic noise images tiling the plane: pixel noise, fine (~0.7 µm) and coarse (~2.5 µm) grain.

    Windows are cut at the block's own coordinates (modulo the bank size), and the grain is
    filtered with wrap-around, so neighbouring blocks continue each other's noise without seams.
    """

    def __init__(self, rng: np.random.Generator, mpp: float, size: int = _BANK):
        self.size = size
        self.white = rng.standard_normal((size, size), dtype=np.float32)
        for name, um in (("grain", 0.7), ("blob", 2.5)):
            g = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32),
                                        max(0.5, um / mpp), mode="wrap")
            setattr(self, name, g / (g.std() + 1e-6))
        self.shift = rng.integers(0, size, (8, 2))

    def window(self, which: str, x0: int, y0: int, h: int, w: int, variant: int = 0) -> np.ndarray:
        """The ``(h, w)`` window of bank ``which`` (``"white"``, ``"grain"``, ``"blob"``) at ``(x0, y0)``,
        wrapped around the bank; ``variant`` picks one of 8 shifted copies."""
        bank = getattr(self, which)
        r = (y0 + int(self.shift[variant, 0])) % self.size
        c = (x0 + int(self.shift[variant, 1])) % self.size
        if r + h <= self.size and c + w <= self.size:
            return bank[r : r + h, c : c + w]
        rows = np.arange(r, r + h) % self.size
        cols = np.arange(c, c + w) % self.size
        return bank[rows[:, None], cols[None, :]]
