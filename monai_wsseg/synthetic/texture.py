"""Procedural H&E-like tissue: the texture engine behind :mod:`monai_wsseg.synthetic.generator`.

Slides are rendered block by block from a *layout*: smooth random fields on a coarse grid (one
node every 16 level-0 pixels) decide where glass, stroma, glands, lymphoid aggregates and tumor are;
nuclei are placed on jittered grids whose randomness is a hash of the grid cell, so every block
regenerates exactly the nuclei it overlaps and the result does not depend on the block order.
Colour follows Beer-Lambert: each pixel holds a hematoxylin amount ``h`` and an eosin amount ``e``
(optical-density units), and RGB = glass * 10**-(h * H_od + e * E_od).

The classes are built so that colour alone confuses them (tumor sheets and lymphoid aggregates
have the same mean stain amounts, as do necrosis and tumor-associated stroma) while the nuclei
differ in size, shape and spacing, which survives down-sampling to 2 µm/px.

All sizes are given in microns and converted with the slide's microns per pixel (mpp); coordinates
are (x, y) level-0 pixels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from monai_wsseg.io.palettes import CLASS_COLOURS

__all__ = ["TISSUE_KINDS", "PATCH_CLASS_KINDS", "PATCH_PALETTE", "TextureParams"]

GLASS, STROMA, GLAND, LYMPH, TUMOR, NECROSIS, TAS, BENIGN = range(8)
#: Names of the tissue kinds, indexed by the codes used in kind maps.
TISSUE_KINDS = ("glass", "stroma", "gland", "lymphoid", "tumor", "necrosis", "tumor_stroma", "benign_epithelium")
#: Patch-set class names (LUAD-HistoSeg and BCSS-WSSS spellings) -> tissue kind code.
PATCH_CLASS_KINDS = {"TE": TUMOR, "TUM": TUMOR, "NEC": NECROSIS, "LYM": LYMPH, "TAS": TAS, "STR": TAS}
#: Mask palette colours per class name (the datasets' own, :data:`monai_wsseg.io.palettes.CLASS_COLOURS`);
#: background (white glass) is always white.
PATCH_PALETTE = CLASS_COLOURS
_LN10 = math.log(10.0)
_CELL = 16  # level-0 pixels between coarse layout nodes
_BLOCK = 1024  # level-0 pixels per rendered block side
_BANK = 1024  # side of the periodic noise images that blocks cut their noise from


# ----------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class TextureParams:
    """Appearance of the synthetic tissue. Lengths in microns, stain amounts in optical density.

    ``*_he`` fields are the (hematoxylin, eosin) amounts of a kind's background (cytoplasm,
    matrix); nuclei are drawn on top. Defaults are tuned so that tumor and lymphoid regions, and
    necrosis and tumor-associated stroma, have nearly the same mean colour.
    Use :meth:`variant` for a shifted but still valid parameter set (generalisation tests).
    """

    hematoxylin_od: tuple[float, float, float] = (0.56, 0.72, 0.41)
    eosin_od: tuple[float, float, float] = (0.22, 0.80, 0.56)
    glass_rgb: tuple[float, float, float] = (244.0, 242.0, 246.0)
    stain_jitter: float = 0.10  # per slide / per patch relative jitter of stain vectors and amounts
    stain_variation: float = 0.10  # smooth within-slide variation of stain amounts (relative std)
    density_variation: float = 0.12  # smooth within-slide variation of nuclear density (relative std)
    hue_variation: float = 0.04  # smooth within-slide variation of each channel's optical density
    pixel_noise: float = 0.025
    stroma_he: tuple[float, float] = (0.05, 0.30)
    tas_he: tuple[float, float] = (0.06, 0.36)
    gland_he: tuple[float, float] = (0.12, 0.22)
    lumen_he: tuple[float, float] = (0.01, 0.04)
    lymph_he: tuple[float, float] = (0.27, 0.143)
    tumor_he: tuple[float, float] = (0.17, 0.24)
    necrosis_he: tuple[float, float] = (0.065, 0.36)
    fibre_period_um: float = 9.0
    lymph_diameter_um: tuple[float, float] = (6.0, 8.0)
    lymph_spacing_um: float = 9.5
    lymph_h: tuple[float, float] = (0.78, 1.08)
    tumor_diameter_um: tuple[float, float] = (12.0, 20.0)
    tumor_spacing_um: float = 14.5
    tumor_core_h: tuple[float, float] = (0.35, 0.55)
    tumor_rim_h: tuple[float, float] = (0.90, 1.15)
    tumor_pleomorphism: float = 0.10
    stroma_nucleus_um: tuple[float, float] = (13.0, 3.2)  # length, width of spindle nuclei
    stroma_spacing_um: float = 32.0
    gland_nucleus_um: tuple[float, float] = (8.0, 5.0)
    gland_radius_um: tuple[float, float] = (35.0, 65.0)
    gland_spacing_um: float = 190.0
    aggregate_radius_um: tuple[float, float] = (140.0, 380.0)
    aggregates_per_mm2: float = 0.8
    # Hard cohorts (all off by default, so the demo renders exactly as before):
    benign_fraction: tuple[float, float] = (0.0, 0.0)  # share of a normal slide's tissue drawn as benign epithelium
    benign_fraction_tumor: tuple[float, float] = (0.0, 0.0)  # the same on tumor slides
    # benign epithelium: small, round, regular, solid nuclei, packed so that the mean colour is the tumor's
    benign_he: tuple[float, float] = (0.16, 0.20)
    benign_nucleus_um: tuple[float, float] = (7.0, 9.0)
    benign_spacing_um: float = 10.0
    benign_h: tuple[float, float] = (0.78, 0.98)
    lymph_fraction_normal: tuple[float, float] | None = None  # lymphoid share of a normal slide (default: tumor_fraction)
    colour_cast: float = 0.0  # per-slide relative std of each channel's optical density (scanner / stain batch)
    blur_um: float = 0.0  # focus blur: Gaussian sigma in microns, applied to the rendered slide

    def variant(self, seed: int, strength: float = 1.0) -> "TextureParams":
        """A shifted parameter set (other stain hue, sizes, densities) for generalisation tests.

        Tumor nuclei stay >= 12 µm and lymphocytes stay small, so the classes keep their meaning.
        ``strength`` scales all shifts (0 gives back ``self``).
        """
        rng = np.random.default_rng([int(seed), 7919])

        def f(spread: float) -> float:
            return float(1.0 + strength * spread * rng.uniform(-1.0, 1.0))

        def scale(pair, spread, lo=0.0):
            k = f(spread)
            return (max(lo, pair[0] * k), max(lo, pair[1] * k))

        def od(vec):
            v = np.asarray(vec) * (1.0 + strength * 0.15 * rng.uniform(-1, 1, 3))
            return tuple(float(x) for x in v / np.linalg.norm(v) * np.linalg.norm(vec))

        k_he = f(0.15)
        return dataclasses.replace(
            self,
            hematoxylin_od=od(self.hematoxylin_od),
            eosin_od=od(self.eosin_od),
            stroma_he=scale(self.stroma_he, 0.15), tas_he=scale(self.tas_he, 0.15),
            lymph_he=(self.lymph_he[0] * k_he, self.lymph_he[1] * f(0.15)),
            tumor_he=(self.tumor_he[0] * k_he, self.tumor_he[1] * f(0.15)),
            necrosis_he=scale(self.necrosis_he, 0.15),
            fibre_period_um=self.fibre_period_um * f(0.2),
            lymph_diameter_um=scale(self.lymph_diameter_um, 0.1),
            lymph_spacing_um=self.lymph_spacing_um * f(0.1),
            tumor_diameter_um=scale(self.tumor_diameter_um, 0.12, lo=12.0),
            tumor_spacing_um=self.tumor_spacing_um * f(0.1),
            tumor_pleomorphism=self.tumor_pleomorphism * f(0.4),
            stroma_spacing_um=self.stroma_spacing_um * f(0.25),
        )


@dataclass(frozen=True)
class _Population:
    """One family of nuclei, placed one per cell of a jittered square grid."""

    kind: int
    spacing_um: float
    diameter_um: tuple[float, float]  # major axis
    aspect: tuple[float, float]  # minor / major
    h: tuple[float, float]  # hematoxylin in the centre
    rim_h: tuple[float, float] | None = None  # darker rim (vesicular nuclei); None: solid
    keep: float = 1.0
    jitter: float = 0.7
    pleo: float = 0.0  # outline harmonics amplitude
    chromatin: float = 0.15  # relative granular texture inside the nucleus
    nucleolus_um: float = 0.0
    along_fibres: bool = False


def _populations(p: TextureParams) -> dict[int, list[_Population]]:
    lym = _Population(LYMPH, p.lymph_spacing_um, p.lymph_diameter_um, (0.85, 1.0), p.lymph_h,
                      keep=0.9, jitter=0.75, chromatin=0.12)
    spindle = _Population(STROMA, p.stroma_spacing_um, (p.stroma_nucleus_um[0] * 0.8, p.stroma_nucleus_um[0] * 1.2),
                          (p.stroma_nucleus_um[1] / p.stroma_nucleus_um[0] * 0.8,
                           p.stroma_nucleus_um[1] / p.stroma_nucleus_um[0] * 1.2),
                          (0.9, 1.15), keep=0.6, along_fibres=True)
    stray_lym = dataclasses.replace(lym, kind=STROMA, spacing_um=45.0, keep=0.35)
    tas_spindle = dataclasses.replace(spindle, kind=TAS, spacing_um=p.stroma_spacing_um * 1.1,
                                      diameter_um=tuple(d * 1.15 for d in spindle.diameter_um))
    tumor = _Population(TUMOR, p.tumor_spacing_um, p.tumor_diameter_um, (0.65, 0.95), p.tumor_core_h,
                        rim_h=p.tumor_rim_h, keep=0.97, jitter=0.55, pleo=p.tumor_pleomorphism,
                        chromatin=0.3, nucleolus_um=2.0)
    dust = _Population(NECROSIS, 11.0, (1.2, 3.5), (0.5, 1.0), (0.8, 1.2), keep=0.55, pleo=0.2,
                       chromatin=0.3)
    ghosts = _Population(NECROSIS, 16.0, (8.0, 13.0), (0.7, 1.0), (0.08, 0.14), keep=0.5, pleo=0.08,
                         chromatin=0.5)
    benign = _Population(BENIGN, p.benign_spacing_um, p.benign_nucleus_um, (0.8, 1.0), p.benign_h,
                         keep=0.95, jitter=0.35, chromatin=0.12)
    return {STROMA: [spindle, stray_lym], TAS: [tas_spindle, dataclasses.replace(stray_lym, kind=TAS)],
            LYMPH: [lym], TUMOR: [tumor], NECROSIS: [dust, ghosts], GLAND: [], GLASS: [], BENIGN: [benign]}


def _kind_tables(p: TextureParams) -> tuple[np.ndarray, ...]:
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


# --------------------------------------------------------------------------- hashing and noise
_M64 = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15


def _mix_int(z: int) -> int:
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


def _cell_uniforms(key: int, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """(n, len(i)) uniforms in [0, 1) that depend only on (key, i, j): same cell, same nucleus."""
    with np.errstate(over="ignore"):
        base = _mix((i.astype(np.int64) + (1 << 24)).astype(np.uint64) * np.uint64(0x100000001B3)
                    ^ (j.astype(np.int64) + (1 << 24)).astype(np.uint64) ^ np.uint64(key))
        out = np.empty((n, i.size), np.float64)
        for f in range(n):
            out[f] = (_mix(base + np.uint64(((f + 1) * 0x632BE59BD9B4E019) & _M64)) >> np.uint64(11)) * 2.0**-53
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean unit-std random field with correlation length ``scale`` nodes (float32)."""
    step = max(1.0, scale / 4.0)
    small = (int(math.ceil(shape[0] / step)) + 4, int(math.ceil(shape[1] / step)) + 4)
    field = ndimage.gaussian_filter(rng.standard_normal(small), scale / step, mode="wrap")
    if step > 1:
        field = ndimage.zoom(field, step, order=1)
    field = field[: shape[0], : shape[1]]
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


class _CoarseGrid:
    """Smooth fields on nodes spaced ``cell`` px; node (i, j) sits at pixel (x0 + j*cell, y0 + i*cell)."""

    def __init__(self, x0: float, y0: float, cell: int, shape: tuple[int, int]):
        self.x0, self.y0, self.cell, self.shape = x0, y0, cell, shape
        self.fields: dict[str, np.ndarray] = {}

    def _coords(self, x, y):
        gx = np.clip((np.asarray(x, np.float64) - self.x0) / self.cell, 0, self.shape[1] - 1.000001)
        gy = np.clip((np.asarray(y, np.float64) - self.y0) / self.cell, 0, self.shape[0] - 1.000001)
        return gx, gy

    def at(self, name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------------- stain model
class _Stain:
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


class _NoiseBank:
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
        bank = getattr(self, which)
        r = (y0 + int(self.shift[variant, 0])) % self.size
        c = (x0 + int(self.shift[variant, 1])) % self.size
        if r + h <= self.size and c + w <= self.size:
            return bank[r : r + h, c : c + w]
        rows = np.arange(r, r + h) % self.size
        cols = np.arange(c, c + w) % self.size
        return bank[rows[:, None], cols[None, :]]


# ---------------------------------------------------------------------------------------- layouts
def _outline(p: np.ndarray, q: np.ndarray, harm: Sequence[np.ndarray]) -> np.ndarray:
    """Normalised radius of (p, q) for an outline r(θ) = 1 + c2 cos2θ + s2 sin2θ + c3 cos3θ + s3 sin3θ."""
    r2 = p * p + q * q + 1e-9
    r = np.sqrt(r2)
    c1, s1 = p / r, q / r
    c2t, s2t = c1 * c1 - s1 * s1, 2 * c1 * s1
    c3t, s3t = c2t * c1 - s2t * s1, s2t * c1 + c2t * s1
    c2, s2, c3, s3 = harm
    return r / (1 + c2 * c2t + s2 * s2t + c3 * c3t + s3 * s3t)


class _Layout:
    """Where each tissue kind is; the base class holds the fields shared by slides and patches."""

    key: int
    mpp: float
    grid: _CoarseGrid
    glands: dict[str, np.ndarray] | None = None
    gland_nuclei: dict[str, np.ndarray] | None = None

    def _texture_fields(self, rng: np.random.Generator, p: TextureParams) -> None:
        self.lumen_he = p.lumen_he
        shape, um = self.grid.shape, self.grid.cell * self.mpp  # microns per node
        k = 2 * math.pi / (p.fibre_period_um / self.mpp)  # radians per level-0 pixel
        theta = rng.uniform(0, math.pi)
        ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float64) * self.grid.cell
        ys += self.grid.y0
        xs += self.grid.x0
        scale_px = 150.0 / self.mpp
        # a modest wander bends the fibres without creating closed (fingerprint-like) contours
        wander = _smooth_noise(rng, shape, 150.0 / um) * (0.35 * k * scale_px)
        psi = k * (xs * math.cos(theta) + ys * math.sin(theta)) + wander
        self.grid.fields["psi"] = (psi + 1.5 * _smooth_noise(rng, shape, 14.0 / um)).astype(np.float32)
        gy, gx = np.gradient(psi)
        self.grid.fields["fibre_angle"] = (np.arctan2(gy, gx) + math.pi / 2).astype(np.float32)
        self.grid.fields["mod_h"] = _smooth_noise(rng, shape, 250.0 / um) * p.stain_variation
        self.grid.fields["mod_e"] = _smooth_noise(rng, shape, 250.0 / um) * p.stain_variation
        for c in range(3):  # uneven staining / illumination shifts hue, not only darkness
            self.grid.fields[f"hue{c}"] = _smooth_noise(rng, shape, 300.0 / um) * p.hue_variation
        self.grid.fields["density"] = _smooth_noise(rng, shape, 150.0 / um) * p.density_variation
        self.grid.fields["fibre_contrast"] = np.clip(0.75 + 0.35 * _smooth_noise(rng, shape, 100.0 / um), 0.2, 1.2)

    def kinds_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def kinds_dense(self, x0: int, y0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


def _blobs(rng: np.random.Generator, free: np.ndarray, tissue: np.ndarray, target: float,
           radius: tuple[float, float], rough: np.ndarray) -> np.ndarray:
    """A field > 0 on roundish blobs centred in ``free`` nodes until they cover ``target`` of ``tissue``.

    ``radius`` is in nodes; ``rough`` (same shape) roughens the outlines.
    """
    field = np.full(free.shape, -1.0, np.float32)
    cand = np.flatnonzero(free)
    yy, xx = np.mgrid[: free.shape[0], : free.shape[1]].astype(np.float32)
    for _ in range(400):
        if not cand.size or (field[tissue] > 0).mean() >= target:
            break
        cy, cx = divmod(int(cand[rng.integers(cand.size)]), free.shape[1])
        r, squash = rng.uniform(*radius), rng.uniform(0.5, 1.0)
        y0, y1 = max(0, int(cy - 1.3 * r)), min(free.shape[0], int(cy + 1.3 * r) + 2)
        x0, x1 = max(0, int(cx - 1.3 * r / squash**0.5)), min(free.shape[1], int(cx + 1.3 * r / squash**0.5) + 2)
        d = np.sqrt((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 * squash)
        blob = np.where(free[y0:y1, x0:x1], 1 - d / (r * (1 + 0.25 * rough[y0:y1, x0:x1])), -1.0)
        np.maximum(field[y0:y1, x0:x1], blob, out=field[y0:y1, x0:x1])
    return field


class _SlideLayout(_Layout):
    def __init__(self, width: int, height: int, mpp: float, tumor: bool, rng: np.random.Generator,
                 p: TextureParams, tumor_fraction: tuple[float, float], key: int):
        self.key, self.mpp, self.width, self.height = key, mpp, width, height
        pad = 4  # nodes beyond each edge so nuclei straddling the border see defined fields
        shape = (math.ceil(height / _CELL) + 2 * pad, math.ceil(width / _CELL) + 2 * pad)
        off = (_CELL - 1) / 2 - pad * _CELL
        self.grid = _CoarseGrid(off, off, _CELL, shape)
        um = _CELL * mpp
        inside = np.zeros(shape, bool)
        inside[pad:-pad, pad:-pad] = True
        yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)

        # tissue: a few large elliptical blobs, roughened by noise, thresholded to a target coverage
        tissue = np.full(shape, -1.0, np.float32)
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.uniform(0.25, 0.75) * shape[0], rng.uniform(0.25, 0.75) * shape[1]
            ry, rx = rng.uniform(0.2, 0.45) * shape[0], rng.uniform(0.2, 0.45) * shape[1]
            a = rng.uniform(0, math.pi)
            u = (xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)
            v = (yy - cy) * math.cos(a) - (xx - cx) * math.sin(a)
            tissue = np.maximum(tissue, 1 - np.sqrt((u / rx) ** 2 + (v / ry) ** 2))
        big = max(shape) * 0.15
        edge = np.minimum(np.minimum(yy, shape[0] - 1 - yy) / shape[0], np.minimum(xx, shape[1] - 1 - xx) / shape[1])
        tissue -= 0.8 * np.clip(1 - edge / 0.08, 0, 1)  # keep most tissue off the slide's border
        tissue += 0.25 * _smooth_noise(rng, shape, big) + 0.06 * _smooth_noise(rng, shape, 40.0 / um)
        coverage = rng.uniform(0.3, 0.6)
        self.t_tissue = float(np.quantile(tissue[inside], 1 - coverage))
        self.grid.fields["tissue"] = tissue
        is_tissue = tissue >= self.t_tissue

        # tumor: irregular blobs inside tissue, thresholded to a target fraction of the tissue
        tum = np.full(shape, -1e3, np.float32)
        if tumor:
            tum = _smooth_noise(rng, shape, 300.0 / um) + 0.35 * _smooth_noise(rng, shape, 80.0 / um)
            cand = np.flatnonzero(is_tissue & inside)
            for c in rng.choice(cand, size=min(len(cand), int(rng.integers(1, 3))), replace=False):
                cy, cx = divmod(int(c), shape[1])
                tum += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (400.0 / um) ** 2))
            frac = rng.uniform(*tumor_fraction)
            self.t_tumor = float(np.quantile(tum[is_tissue & inside], 1 - frac)) if cand.size else 1e9
        else:
            self.t_tumor = 1e9
        self.grid.fields["tumor"] = tum
        is_tumor = is_tissue & (tum >= self.t_tumor)

        # Lymphoid aggregates: roundish blobs in non-tumor tissue, at least one per slide. Normal
        # slides get as much lymphoid area as tumor slides get tumor, so the amount of dark
        # purple tissue says nothing about the slide label.
        lym = np.full(shape, -1.0, np.float32)
        cand = np.flatnonzero(is_tissue & ~is_tumor & inside)
        area_mm2 = cand.size * (um / 1000) ** 2
        n_agg = max(1, int(rng.poisson(p.aggregates_per_mm2 * area_mm2))) if cand.size else 0
        target = rng.uniform(*(p.lymph_fraction_normal or tumor_fraction)) if not tumor else 0.0
        rough = _smooth_noise(rng, shape, 40.0 / um)
        placed = 0
        while cand.size and placed < 200 and (placed < n_agg or
                                              (lym[is_tissue & inside] > 0).mean() < target):
            cy, cx = divmod(int(cand[rng.integers(cand.size)]), shape[1])
            r = rng.uniform(*p.aggregate_radius_um) / um
            squash = rng.uniform(0.6, 1.0)
            y0, y1 = max(0, int(cy - 1.3 * r)), min(shape[0], int(cy + 1.3 * r) + 2)
            x0, x1 = max(0, int(cx - 1.3 * r / squash**0.5)), min(shape[1], int(cx + 1.3 * r / squash**0.5) + 2)
            d = np.sqrt((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 * squash)
            np.maximum(lym[y0:y1, x0:x1], 1 - d / (r * (1 + 0.15 * rough[y0:y1, x0:x1])), out=lym[y0:y1, x0:x1])
            placed += 1
        self.grid.fields["lymph"] = lym
        self._texture_fields(rng, p)
        self.grid.fields["benign"] = np.full(shape, -1.0, np.float32)  # glands are placed before benign sheets
        self._make_glands(rng, p)
        share = p.benign_fraction_tumor if tumor else p.benign_fraction
        if share[1] > 0:  # its own generator: slides without benign epithelium render as before
            brng = np.random.default_rng([key & 0xFFFFFFFF, 11])
            free = is_tissue & ~is_tumor & (lym <= 0) & inside
            self.grid.fields["benign"] = _blobs(brng, free, is_tissue & inside, brng.uniform(*share),
                                                (60.0 / um, 200.0 / um), _smooth_noise(brng, shape, 30.0 / um))

    def kinds_at(self, x, y):
        g = self.grid
        return self._rule(g.at("tissue", x, y), g.at("tumor", x, y), g.at("lymph", x, y), g.at("benign", x, y))

    def _rule(self, tissue, tumor, lymph, benign):
        kinds = np.full(tissue.shape, STROMA, np.uint8)
        kinds[benign > 0] = BENIGN
        kinds[lymph > 0] = LYMPH
        kinds[tumor >= self.t_tumor] = TUMOR
        kinds[tissue < self.t_tissue] = GLASS
        return kinds

    def kinds_dense(self, x0, y0, w, h):
        g = self.grid
        fields = []
        for name, thr in (("tissue", self.t_tissue), ("tumor", self.t_tumor), ("lymph", 0.0), ("benign", 0.0)):
            lo, hi = g.bounds(name, x0, y0, w, h)
            if lo >= thr or hi < thr:  # the whole block is on one side of the threshold
                fields.append(np.full((h, w), hi, np.float32))
            else:
                fields.append(g.dense(name, x0, y0, w, h))
        kinds = self._rule(*fields)
        lumen = None
        gl = self.glands
        if gl is not None and gl["x"].size:
            r = gl["R"] + 2
            hit = np.flatnonzero((gl["x"] + r >= x0) & (gl["x"] - r < x0 + w)
                                 & (gl["y"] + r >= y0) & (gl["y"] - r < y0 + h))
            for n in hit:
                bx0, bx1 = max(x0, int(gl["x"][n] - r[n])), min(x0 + w, int(gl["x"][n] + r[n]) + 1)
                by0, by1 = max(y0, int(gl["y"][n] - r[n])), min(y0 + h, int(gl["y"][n] + r[n]) + 1)
                u = np.arange(bx0, bx1, dtype=np.float32)[None, :] - gl["x"][n]
                v = np.arange(by0, by1, dtype=np.float32)[:, None] - gl["y"][n]
                cs, sn = gl["cos"][n], gl["sin"][n]
                rho = _outline((u * cs + v * sn) / gl["R"][n], (v * cs - u * sn) / (gl["R"][n] * gl["aspect"][n]),
                               [gl[k][n] for k in ("c2", "s2", "c3", "s3")])
                sub = kinds[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
                sub[(rho < 1) & (sub == STROMA)] = GLAND
                if lumen is None:
                    lumen = np.zeros((h, w), bool)
                lumen[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] |= (rho < gl["lumen"][n]) & (sub == GLAND)
        return kinds, lumen

    def _make_glands(self, rng: np.random.Generator, p: TextureParams) -> None:
        s = p.gland_spacing_um / self.mpp
        ys, xs = np.mgrid[s / 2 : self.height : s, s / 2 : self.width : s]
        x = (xs.ravel() + rng.uniform(-0.3, 0.3, xs.size) * s).astype(np.float32)
        y = (ys.ravel() + rng.uniform(-0.3, 0.3, ys.size) * s).astype(np.float32)
        R = (rng.uniform(*p.gland_radius_um, x.size) / self.mpp).astype(np.float32)
        ok = rng.random(x.size) < 0.55
        margin = R + 12 / self.mpp
        for t in np.linspace(0, 2 * math.pi, 9)[:-1]:
            ok &= self.kinds_at(x + margin * math.cos(t), y + margin * math.sin(t)) == STROMA
        ok &= self.kinds_at(x, y) == STROMA
        n = int(ok.sum())
        ang = rng.uniform(0, math.pi, n)
        gl = dict(x=x[ok], y=y[ok], R=R[ok], aspect=rng.uniform(0.65, 1.0, n).astype(np.float32),
                  cos=np.cos(ang).astype(np.float32), sin=np.sin(ang).astype(np.float32),
                  lumen=rng.uniform(0.35, 0.6, n).astype(np.float32))
        for k in ("c2", "s2", "c3", "s3"):
            gl[k] = rng.uniform(-0.06, 0.06, n).astype(np.float32)
        self.glands = gl
        # nuclei on a ring inside the epithelial band, long axis pointing to the gland centre
        parts = []
        for g in range(n):
            ring = gl["lumen"][g] + 0.55 * (1 - gl["lumen"][g])
            per = math.pi * ring * gl["R"][g] * (1 + gl["aspect"][g])
            m = max(6, int(per / (p.gland_nucleus_um[1] * 1.5 / self.mpp)))
            t = np.linspace(0, 2 * math.pi, m, endpoint=False) + rng.uniform(-0.08, 0.08, m)
            pc, qc = np.cos(t), np.sin(t)
            rr = ring / _outline(pc, qc, [np.full(m, gl[k][g]) for k in ("c2", "s2", "c3", "s3")])
            pu, qv = rr * pc * gl["R"][g], rr * qc * gl["R"][g] * gl["aspect"][g]
            u = pu * gl["cos"][g] - qv * gl["sin"][g]
            v = pu * gl["sin"][g] + qv * gl["cos"][g]
            parts.append((gl["x"][g] + u, gl["y"][g] + v, np.arctan2(v, u)))
        cx = np.concatenate([q[0] for q in parts]) if parts else np.zeros(0)
        cy = np.concatenate([q[1] for q in parts]) if parts else np.zeros(0)
        angle = np.concatenate([q[2] for q in parts]) if parts else np.zeros(0)
        k = cx.size
        a = rng.uniform(0.9, 1.1, k) * p.gland_nucleus_um[0] / 2 / self.mpp
        b = a * rng.uniform(0.9, 1.1, k) * p.gland_nucleus_um[1] / p.gland_nucleus_um[0]
        self.gland_nuclei = _nucleus_arrays(
            cx, cy, a, b,
            angle, np.zeros((4, k)), rng.uniform(0.85, 1.1, k), None, 0.15, np.zeros(k), GLAND)


class _PatchLayout(_Layout):
    """A square patch split into warped Voronoi regions, one tissue kind each."""

    def __init__(self, size: int, mpp: float, kinds: Sequence[int], rng: np.random.Generator,
                 p: TextureParams, key: int):
        self.key, self.mpp, self.size = key, mpp, size
        pad_px = 48
        cell = 8
        n = math.ceil((size + 2 * pad_px) / cell) + 1
        self.grid = _CoarseGrid(-pad_px, -pad_px, cell, (n, n))
        self.region_kinds = np.asarray(kinds, np.uint8)
        warp = 0.12 * size
        self.grid.fields["wx"] = _smooth_noise(rng, (n, n), size / cell / 5) * warp
        self.grid.fields["wy"] = _smooth_noise(rng, (n, n), size / cell / 5) * warp
        self.seeds = rng.uniform(0, size, (len(kinds), 2))
        self.weights = rng.uniform(0, 0.05 * size * size, len(kinds))
        self._texture_fields(rng, p)

    def kinds_at(self, x, y):
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float32)
        if self.region_kinds.size == 1:
            return np.full(x.shape, self.region_kinds[0], np.uint8)
        xw = x + self.grid.at("wx", x, y)
        yw = y + self.grid.at("wy", x, y)
        d = [(xw - sx) ** 2 + (yw - sy) ** 2 - wgt for (sx, sy), wgt in zip(self.seeds, self.weights)]
        return self.region_kinds[np.argmin(np.stack(d), axis=0)]

    def kinds_dense(self, x0, y0, w, h):
        yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        return self.kinds_at(xx, yy), None


# ----------------------------------------------------------------------------------------- nuclei
def _nucleus_arrays(x, y, a, b, angle, harm, h, rim_h, chromatin, nucleolus, kind) -> dict[str, np.ndarray]:
    n = np.asarray(x).size
    f32 = lambda v: np.broadcast_to(np.asarray(v, np.float32), (n,)).copy()  # noqa: E731
    return dict(x=f32(x), y=f32(y), a=f32(np.maximum(a, 0.5)), b=f32(np.maximum(b, 0.4)),
                cos=f32(np.cos(angle)), sin=f32(np.sin(angle)),
                c2=f32(harm[0]), s2=f32(harm[1]), c3=f32(harm[2]), s3=f32(harm[3]),
                h=f32(h), rim=f32(h if rim_h is None else rim_h), chrom=f32(chromatin),
                nucleolus=f32(nucleolus), kind=np.full(n, kind, np.uint8))


def _seed_nuclei(layout: _Layout, pop: _Population, pid: int, x0: int, y0: int, w: int, h: int):
    mpp = layout.mpp
    s = pop.spacing_um / mpp
    reach = pop.diameter_um[1] / 2 / mpp * (1 + 3 * pop.pleo) + 2 + s
    ii, jj = np.mgrid[math.floor((y0 - reach) / s) : math.floor((y0 + h + reach) / s) + 1,
                      math.floor((x0 - reach) / s) : math.floor((x0 + w + reach) / s) + 1]
    r = _cell_uniforms(_mix_int(layout.key ^ (pid * 0x9E37)), ii.ravel(), jj.ravel(), 14)
    cx = (jj.ravel() + 0.5 + pop.jitter * (r[0] - 0.5)) * s
    cy = (ii.ravel() + 0.5 + pop.jitter * (r[1] - 0.5)) * s
    keep = r[2] < pop.keep * (1 + layout.grid.at("density", cx, cy))
    keep[keep] &= layout.kinds_at(cx[keep], cy[keep]) == pop.kind
    r, cx, cy = r[:, keep], cx[keep], cy[keep]
    if cx.size == 0:
        return None
    lerp = lambda rng2, u: rng2[0] + (rng2[1] - rng2[0]) * u  # noqa: E731
    a = lerp(pop.diameter_um, r[3]) / 2 / mpp
    b = a * lerp(pop.aspect, r[4])
    if pop.along_fibres:
        angle = layout.grid.at("fibre_angle", cx, cy) + (r[5] - 0.5) * 0.5
    else:
        angle = r[5] * math.pi
    harm = pop.pleo * (2 * r[6:10] - 1)
    hh = lerp(pop.h, r[10])
    rim = None if pop.rim_h is None else lerp(pop.rim_h, r[11])
    nucleolus = np.where(r[12] < 0.8, pop.nucleolus_um / 2 / mpp * (0.7 + 0.6 * r[13]), 0.0)
    return _nucleus_arrays(cx, cy, a, b, angle, harm, hh, rim, pop.chromatin, nucleolus, pop.kind)


def _stamp(nuc: dict[str, np.ndarray], x0: int, y0: int, kinds: np.ndarray, grain: np.ndarray,
           nh: np.ndarray, na: np.ndarray, ne: np.ndarray) -> None:
    """Rasterise nuclei into flat (H*W) layers: nh hematoxylin, na coverage, ne nucleolar eosin.

    Each nucleus only colours pixels of its own kind, so texture never crosses a region border.
    """
    hgt, wid = kinds.shape
    kflat, gflat = kinds.ravel(), grain.ravel()
    reach = nuc["a"] * (1 + np.abs(nuc["c2"]) + np.abs(nuc["s2"]) + np.abs(nuc["c3"]) + np.abs(nuc["s3"])) + 1.5
    size = 2 * np.ceil(reach).astype(np.int64) + 1
    size = (size + 3) // 4 * 4 + 1  # few distinct stamp sizes -> few vectorised batches
    for k in np.unique(size):
        idx = np.flatnonzero(size == k)
        off = np.arange(k, dtype=np.int64) - k // 2
        for chunk in np.array_split(idx, max(1, idx.size * k * k // 1_500_000 + 1)):
            g = {name: v[chunk][:, None, None] for name, v in nuc.items()}
            ix = np.floor(nuc["x"][chunk]).astype(np.int64)[:, None] + off  # (n, k) columns
            iy = np.floor(nuc["y"][chunk]).astype(np.int64)[:, None] + off  # (n, k) rows
            u = (ix - nuc["x"][chunk][:, None]).astype(np.float32)[:, None, :]
            v = (iy - nuc["y"][chunk][:, None]).astype(np.float32)[:, :, None]
            p = (u * g["cos"] + v * g["sin"]) / g["a"]
            q = (v * g["cos"] - u * g["sin"]) / g["b"]
            if np.any(nuc["c2"][chunk]) or np.any(nuc["c3"][chunk]):
                rho = _outline(p, q, (g["c2"], g["s2"], g["c3"], g["s3"]))
            else:
                rho = np.sqrt(p * p + q * q)
            alpha = np.clip((1 - rho) * np.sqrt(g["a"] * g["b"]) + 0.5, 0, 1)
            in_rows = ((iy >= y0) & (iy < y0 + hgt))[:, :, None]
            in_cols = ((ix >= x0) & (ix < x0 + wid))[:, None, :]
            inside = (alpha > 0) & in_rows & in_cols
            flat = ((iy - y0)[:, :, None] * wid + (ix - x0)[:, None, :])[inside]
            same = kflat[flat] == np.broadcast_to(g["kind"], inside.shape)[inside]
            flat = flat[same]
            sel = tuple(a[same] for a in np.nonzero(inside))
            rim_t = np.clip((rho[sel] - 0.55) / 0.4, 0, 1) ** 2
            hv = g["h"][sel[0], 0, 0] + (g["rim"][sel[0], 0, 0] - g["h"][sel[0], 0, 0]) * rim_t
            hv *= 1 + g["chrom"][sel[0], 0, 0] * gflat[flat]
            a_in = alpha[sel]
            np.maximum.at(nh, flat, hv * a_in)
            np.maximum.at(na, flat, a_in)
            # a small dark-magenta nucleolus a little off centre
            nr = g["nucleolus"][sel[0], 0, 0]
            has = nr > 0
            if has.any():
                du = u[sel[0], 0, sel[2]] - 0.25 * g["a"][sel[0], 0, 0]
                dv = v[sel[0], sel[1], 0]
                hit = has & (du * du + dv * dv < nr * nr)
                np.maximum.at(nh, flat[hit], 1.1 * a_in[hit])
                np.maximum.at(ne, flat[hit], 0.3 * a_in[hit])


# ------------------------------------------------------------------------------------- rendering
def _render_block(layout: _Layout, stain: _Stain, bank: _NoiseBank, tables, pops, x0: int, y0: int,
                  w: int, h: int, out: np.ndarray) -> np.ndarray:
    """Render level-0 pixels [x0, x0+w) x [y0, y0+h) into ``out`` (h, w, 3); returns the kind map."""
    kinds, lumen = layout.kinds_dense(x0, y0, w, h)
    present = np.bincount(kinds.ravel(), minlength=len(TISSUE_KINDS))
    only = int(np.argmax(present)) if np.count_nonzero(present) == 1 else None
    # per-kind constants: a scalar where all kinds in the block agree (e.g. one kind), else a map
    kinds_in = np.flatnonzero(present)
    tab_h, tab_e, tab_fibre, tab_grain, tab_blob, tab_noise = (
        t[kinds_in[0]] if np.ptp(t[kinds_in]) == 0 else t[kinds] for t in tables)
    white = bank.window("white", x0, y0, h, w, 0)
    white2 = bank.window("white", x0, y0, h, w, 1)
    if only == GLASS:
        hh = tab_noise * white
        ee = tab_noise * white2 + tab_e
        stain.rgb(hh, ee, out)
        return kinds
    grain = bank.window("grain", x0, y0, h, w, 2)
    blob = bank.window("blob", x0, y0, h, w, 3)
    g = layout.grid
    mod_h = g.dense("mod_h", x0, y0, w, h, step=8)
    mod_h += 1
    mod_e = g.dense("mod_e", x0, y0, w, h, step=8)
    mod_e += 1
    texture = tab_grain * grain + tab_blob * blob
    texture += 1
    hh = tab_h * mod_h
    hh *= texture
    ee = tab_e * mod_e
    if np.any(tab_fibre):
        # pale clefts between wavy collagen bundles
        wave = g.dense("psi", x0, y0, w, h)
        wave += 1.2 * blob
        wave += 0.4 * grain
        np.sin(wave, out=wave)
        wave -= 0.35
        np.clip(wave, 0, 1, out=wave)
        wave *= g.dense("fibre_contrast", x0, y0, w, h, step=8)
        wave *= -1.5 * tab_fibre
        wave += 1
        texture *= wave
    ee *= texture
    if lumen is not None:
        hh[lumen], ee[lumen] = layout.lumen_he
    nh, na, ne = (np.zeros(h * w, np.float32) for _ in range(3))
    for kind, plist in pops.items():
        if present[kind] == 0:
            continue
        for i, pop in enumerate(plist):
            nuc = _seed_nuclei(layout, pop, kind * 16 + i, x0, y0, w, h)
            if nuc is not None:
                _stamp(nuc, x0, y0, kinds, grain, nh, na, ne)
    if present[GLAND] and layout.gland_nuclei is not None:
        gn = layout.gland_nuclei
        r = gn["a"] + 2
        hit = (gn["x"] + r >= x0) & (gn["x"] - r < x0 + w) & (gn["y"] + r >= y0) & (gn["y"] - r < y0 + h)
        if hit.any():
            _stamp({k: v[hit] for k, v in gn.items()}, x0, y0, kinds, grain, nh, na, ne)
    na, nh, ne = na.reshape(h, w), nh.reshape(h, w), ne.reshape(h, w)
    nh *= mod_h
    hh -= hh * na
    hh += nh
    na *= 0.85
    ee -= ee * na
    ee += ne
    hh += tab_noise * white
    ee += tab_noise * white2
    stain.rgb(hh, ee, out, [g.dense(f"hue{c}", x0, y0, w, h, step=8) for c in range(3)])
    return kinds


def _slide_key(seed: int) -> int:
    return int(np.random.SeedSequence(int(seed)).generate_state(2, np.uint64)[0])
