"""Nuclei of the synthetic tissue: their families per tissue kind, where they sit and how they are drawn.

Nuclei are placed on jittered grids whose randomness is a hash of the grid cell
(:func:`~monai_wsseg.synthetic.fields.cell_uniforms`), so every rendered block regenerates exactly the
nuclei it overlaps and the result does not depend on the block order. A nucleus colours only pixels of
its own tissue kind, so texture never crosses a region border.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from monai_wsseg.synthetic.fields import cell_uniforms, mix_int
from monai_wsseg.synthetic.params import BENIGN, GLAND, GLASS, LYMPH, NECROSIS, STROMA, TAS, TUMOR, TextureParams

if TYPE_CHECKING:
    from monai_wsseg.synthetic.layouts import Layout

__all__ = ["Population", "nucleus_arrays", "outline", "populations", "seed_nuclei", "stamp"]


@dataclass(frozen=True)
class Population:
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


def populations(p: TextureParams) -> dict[int, list[Population]]:
    """The nucleus families of each tissue kind code (glands' nuclei are placed by their layout instead)."""
    lym = Population(LYMPH, p.lymph_spacing_um, p.lymph_diameter_um, (0.85, 1.0), p.lymph_h,
                     keep=0.9, jitter=0.75, chromatin=0.12)
    spindle = Population(STROMA, p.stroma_spacing_um, (p.stroma_nucleus_um[0] * 0.8, p.stroma_nucleus_um[0] * 1.2),
                         (p.stroma_nucleus_um[1] / p.stroma_nucleus_um[0] * 0.8,
                           p.stroma_nucleus_um[1] / p.stroma_nucleus_um[0] * 1.2),
                          (0.9, 1.15), keep=0.6, along_fibres=True)
    stray_lym = dataclasses.replace(lym, kind=STROMA, spacing_um=45.0, keep=0.35)
    tas_spindle = dataclasses.replace(spindle, kind=TAS, spacing_um=p.stroma_spacing_um * 1.1,
                                      diameter_um=(spindle.diameter_um[0] * 1.15, spindle.diameter_um[1] * 1.15))
    tumor = Population(TUMOR, p.tumor_spacing_um, p.tumor_diameter_um, (0.65, 0.95), p.tumor_core_h,
                       rim_h=p.tumor_rim_h, keep=0.97, jitter=0.55, pleo=p.tumor_pleomorphism,
                       chromatin=0.3, nucleolus_um=2.0)
    dust = Population(NECROSIS, 11.0, (1.2, 3.5), (0.5, 1.0), (0.8, 1.2), keep=0.55, pleo=0.2,
                      chromatin=0.3)
    ghosts = Population(NECROSIS, 16.0, (8.0, 13.0), (0.7, 1.0), (0.08, 0.14), keep=0.5, pleo=0.08,
                        chromatin=0.5)
    benign = Population(BENIGN, p.benign_spacing_um, p.benign_nucleus_um, (0.8, 1.0), p.benign_h,
                        keep=0.95, jitter=0.35, chromatin=0.12)
    return {STROMA: [spindle, stray_lym], TAS: [tas_spindle, dataclasses.replace(stray_lym, kind=TAS)],
            LYMPH: [lym], TUMOR: [tumor], NECROSIS: [dust, ghosts], GLAND: [], GLASS: [], BENIGN: [benign]}


def outline(p: np.ndarray, q: np.ndarray, harm: Sequence[np.ndarray]) -> np.ndarray:
    """Normalised radius of (p, q) for an outline r(θ) = 1 + c2 cos2θ + s2 sin2θ + c3 cos3θ + s3 sin3θ."""
    r2 = p * p + q * q + 1e-9
    r = np.sqrt(r2)
    c1, s1 = p / r, q / r
    c2t, s2t = c1 * c1 - s1 * s1, 2 * c1 * s1
    c3t, s3t = c2t * c1 - s2t * s1, s2t * c1 + c2t * s1
    c2, s2, c3, s3 = harm
    return r / (1 + c2 * c2t + s2 * s2t + c3 * c3t + s3 * s3t)


def nucleus_arrays(x, y, a, b, angle, harm, h, rim_h, chromatin, nucleolus, kind) -> dict[str, np.ndarray]:
    """Nuclei as flat float32 arrays (centre, half axes, orientation, outline harmonics, stain) for :func:`stamp`."""
    n = np.asarray(x).size

    def f32(v) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, np.float32), (n,)).copy()

    return dict(x=f32(x), y=f32(y), a=f32(np.maximum(a, 0.5)), b=f32(np.maximum(b, 0.4)),
                cos=f32(np.cos(angle)), sin=f32(np.sin(angle)),
                c2=f32(harm[0]), s2=f32(harm[1]), c3=f32(harm[2]), s3=f32(harm[3]),
                h=f32(h), rim=f32(h if rim_h is None else rim_h), chrom=f32(chromatin),
                nucleolus=f32(nucleolus), kind=np.full(n, kind, np.uint8))


def seed_nuclei(layout: Layout, pop: Population, pid: int, x0: int, y0: int, w: int, h: int):
    """The nuclei of family ``pop`` (number ``pid``) that may reach the block ``[x0, x0+w) x [y0, y0+h)``,
    as :func:`nucleus_arrays`, or ``None``; each grid cell draws the same nucleus whichever block asks."""
    mpp = layout.mpp
    s = pop.spacing_um / mpp
    reach = pop.diameter_um[1] / 2 / mpp * (1 + 3 * pop.pleo) + 2 + s
    ii, jj = np.mgrid[math.floor((y0 - reach) / s) : math.floor((y0 + h + reach) / s) + 1,
                      math.floor((x0 - reach) / s) : math.floor((x0 + w + reach) / s) + 1]
    r = cell_uniforms(mix_int(layout.key ^ (pid * 0x9E37)), ii.ravel(), jj.ravel(), 14)
    cx = (jj.ravel() + 0.5 + pop.jitter * (r[0] - 0.5)) * s
    cy = (ii.ravel() + 0.5 + pop.jitter * (r[1] - 0.5)) * s
    keep = r[2] < pop.keep * (1 + layout.grid.at("density", cx, cy))
    keep[keep] &= layout.kinds_at(cx[keep], cy[keep]) == pop.kind
    r, cx, cy = r[:, keep], cx[keep], cy[keep]
    if cx.size == 0:
        return None

    def lerp(rng2, u):
        return rng2[0] + (rng2[1] - rng2[0]) * u

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
    return nucleus_arrays(cx, cy, a, b, angle, harm, hh, rim, pop.chromatin, nucleolus, pop.kind)


def stamp(nuc: dict[str, np.ndarray], x0: int, y0: int, kinds: np.ndarray, grain: np.ndarray,
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
                rho = outline(p, q, (g["c2"], g["s2"], g["c3"], g["s3"]))
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
