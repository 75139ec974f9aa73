"""Where each tissue kind is: the layouts of synthetic slides and patches.

A layout holds smooth random fields on a coarse grid (:class:`~monai_wsseg.synthetic.fields.CoarseGrid`,
one node every 16 level-0 pixels for slides) that decide where glass, stroma, glands, lymphoid aggregates,
benign epithelium and tumor are (:class:`SlideLayout`), or a warped Voronoi partition of a patch into
regions of one kind each (:class:`PatchLayout`), plus the fields every kind's texture reads (fibres, stain
and density variation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from typing_extensions import override

from monai_wsseg.synthetic.fields import CoarseGrid, smooth_noise
from monai_wsseg.synthetic.nuclei import nucleus_arrays, outline
from monai_wsseg.synthetic.params import BENIGN, GLAND, GLASS, LYMPH, STROMA, TUMOR, TextureParams

__all__ = ["Layout", "PatchLayout", "SlideLayout", "blobs"]

_CELL = 16  # level-0 pixels between coarse layout nodes


class Layout:
    """Where each tissue kind is; the base class holds the fields shared by slides and patches."""

    key: int
    mpp: float
    grid: CoarseGrid
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
        wander = smooth_noise(rng, shape, 150.0 / um) * (0.35 * k * scale_px)
        psi = k * (xs * math.cos(theta) + ys * math.sin(theta)) + wander
        self.grid.fields["psi"] = (psi + 1.5 * smooth_noise(rng, shape, 14.0 / um)).astype(np.float32)
        gy, gx = np.gradient(psi)
        self.grid.fields["fibre_angle"] = (np.arctan2(gy, gx) + math.pi / 2).astype(np.float32)
        self.grid.fields["mod_h"] = smooth_noise(rng, shape, 250.0 / um) * p.stain_variation
        self.grid.fields["mod_e"] = smooth_noise(rng, shape, 250.0 / um) * p.stain_variation
        for c in range(3):  # uneven staining / illumination shifts hue, not only darkness
            self.grid.fields[f"hue{c}"] = smooth_noise(rng, shape, 300.0 / um) * p.hue_variation
        self.grid.fields["density"] = smooth_noise(rng, shape, 150.0 / um) * p.density_variation
        self.grid.fields["fibre_contrast"] = np.clip(0.75 + 0.35 * smooth_noise(rng, shape, 100.0 / um), 0.2, 1.2)

    def kinds_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Tissue kind code at level-0 pixels ``(x, y)`` (arrays of one shape)."""
        raise NotImplementedError

    def kinds_dense(self, x0: int, y0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Kind codes of the ``(h, w)`` block at level-0 ``(x0, y0)``, and its gland-lumen mask (``None``: no lumen)."""
        raise NotImplementedError


def blobs(rng: np.random.Generator, free: np.ndarray, tissue: np.ndarray, target: float,
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


class SlideLayout(Layout):
    """A whole slide: tissue blobs on glass, tumor regions (tumor slides), lymphoid aggregates, glands and,
    with the hard parameters, benign epithelium."""

    def __init__(self, width: int, height: int, mpp: float, tumor: bool, rng: np.random.Generator,
                 p: TextureParams, tumor_fraction: tuple[float, float], key: int):
        self.key, self.mpp, self.width, self.height = key, mpp, width, height
        pad = 4  # nodes beyond each edge so nuclei straddling the border see defined fields
        shape = (math.ceil(height / _CELL) + 2 * pad, math.ceil(width / _CELL) + 2 * pad)
        off = (_CELL - 1) / 2 - pad * _CELL
        self.grid = CoarseGrid(off, off, _CELL, shape)
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
        tissue += 0.25 * smooth_noise(rng, shape, big) + 0.06 * smooth_noise(rng, shape, 40.0 / um)
        coverage = rng.uniform(0.3, 0.6)
        self.t_tissue = float(np.quantile(tissue[inside], 1 - coverage))
        self.grid.fields["tissue"] = tissue
        is_tissue = tissue >= self.t_tissue

        # tumor: irregular blobs inside tissue, thresholded to a target fraction of the tissue
        tum: np.ndarray = np.full(shape, -1e3, np.float32)
        if tumor:
            tum = smooth_noise(rng, shape, 300.0 / um) + 0.35 * smooth_noise(rng, shape, 80.0 / um)
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
        rough = smooth_noise(rng, shape, 40.0 / um)
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
            self.grid.fields["benign"] = blobs(brng, free, is_tissue & inside, brng.uniform(*share),
                                               (60.0 / um, 200.0 / um), smooth_noise(brng, shape, 30.0 / um))

    @override
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

    @override
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
                rho = outline((u * cs + v * sn) / gl["R"][n], (v * cs - u * sn) / (gl["R"][n] * gl["aspect"][n]),
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
            rr = ring / outline(pc, qc, [np.full(m, gl[k][g]) for k in ("c2", "s2", "c3", "s3")])
            pu, qv = rr * pc * gl["R"][g], rr * qc * gl["R"][g] * gl["aspect"][g]
            u = pu * gl["cos"][g] - qv * gl["sin"][g]
            v = pu * gl["sin"][g] + qv * gl["cos"][g]
            parts.append((gl["x"][g] + u, gl["y"][g] + v, np.arctan2(v, u)))
        cx = np.concatenate([q[0] for q in parts]) if parts else np.zeros(0)
        cy = np.concatenate([q[1] for q in parts]) if parts else np.zeros(0)
        angle = np.concatenate([q[2] for q in parts]) if parts else np.zeros(0)
        count = cx.size
        a = rng.uniform(0.9, 1.1, count) * p.gland_nucleus_um[0] / 2 / self.mpp
        b = a * rng.uniform(0.9, 1.1, count) * p.gland_nucleus_um[1] / p.gland_nucleus_um[0]
        self.gland_nuclei = nucleus_arrays(
            cx, cy, a, b,
            angle, np.zeros((4, count)), rng.uniform(0.85, 1.1, count), None, 0.15, np.zeros(count), GLAND)


class PatchLayout(Layout):
    """A square patch split into warped Voronoi regions, one tissue kind each."""

    def __init__(self, size: int, mpp: float, kinds: Sequence[int], rng: np.random.Generator,
                 p: TextureParams, key: int):
        self.key, self.mpp, self.size = key, mpp, size
        pad_px = 48
        cell = 8
        n = math.ceil((size + 2 * pad_px) / cell) + 1
        self.grid = CoarseGrid(-pad_px, -pad_px, cell, (n, n))
        self.region_kinds = np.asarray(kinds, np.uint8)
        warp = 0.12 * size
        self.grid.fields["wx"] = smooth_noise(rng, (n, n), size / cell / 5) * warp
        self.grid.fields["wy"] = smooth_noise(rng, (n, n), size / cell / 5) * warp
        self.seeds = rng.uniform(0, size, (len(kinds), 2))
        self.weights = rng.uniform(0, 0.05 * size * size, len(kinds))
        self._texture_fields(rng, p)

    @override
    def kinds_at(self, x, y):
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float32)
        if self.region_kinds.size == 1:
            return np.full(x.shape, self.region_kinds[0], np.uint8)
        xw = x + self.grid.at("wx", x, y)
        yw = y + self.grid.at("wy", x, y)
        d = [(xw - sx) ** 2 + (yw - sy) ** 2 - wgt for (sx, sy), wgt in zip(self.seeds, self.weights, strict=True)]
        return self.region_kinds[np.argmin(np.stack(d), axis=0)]

    @override
    def kinds_dense(self, x0, y0, w, h):
        yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        return self.kinds_at(xx, yy), None
