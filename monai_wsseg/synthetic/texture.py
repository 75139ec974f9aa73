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

The engine's parts: :mod:`.params` (tissue kinds, :class:`~monai_wsseg.synthetic.params.TextureParams`),
:mod:`.fields` (hashes and smooth random fields), :mod:`.stains` (colour), :mod:`.nuclei` and
:mod:`.layouts`; this module renders one block from them (:func:`render_block`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from monai_wsseg.synthetic.layouts import Layout
from monai_wsseg.synthetic.nuclei import Population, seed_nuclei, stamp
from monai_wsseg.synthetic.params import GLAND, GLASS, TISSUE_KINDS
from monai_wsseg.synthetic.stains import NoiseBank, Stain

__all__ = ["BLOCK", "render_block", "slide_key"]

BLOCK = 1024  # level-0 pixels per rendered block side


def render_block(layout: Layout, stain: Stain, bank: NoiseBank, tables: Sequence[np.ndarray],
                 pops: Mapping[int, Sequence[Population]], x0: int, y0: int, w: int, h: int,
                 out: np.ndarray) -> np.ndarray:
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
    nh: np.ndarray  # flat while the nuclei are stamped, (h, w) after
    na: np.ndarray
    ne: np.ndarray
    nh, na, ne = (np.zeros(h * w, np.float32) for _ in range(3))
    for kind, plist in pops.items():
        if present[kind] == 0:
            continue
        for i, pop in enumerate(plist):
            nuc = seed_nuclei(layout, pop, kind * 16 + i, x0, y0, w, h)
            if nuc is not None:
                stamp(nuc, x0, y0, kinds, grain, nh, na, ne)
    if present[GLAND] and layout.gland_nuclei is not None:
        gn = layout.gland_nuclei
        r = gn["a"] + 2
        hit = (gn["x"] + r >= x0) & (gn["x"] - r < x0 + w) & (gn["y"] + r >= y0) & (gn["y"] - r < y0 + h)
        if hit.any():
            stamp({k: v[hit] for k, v in gn.items()}, x0, y0, kinds, grain, nh, na, ne)
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


def slide_key(seed: int) -> int:
    """The 64-bit key of ``seed`` that the nuclei hashes of a slide (or patch set) start from."""
    return int(np.random.SeedSequence(int(seed)).generate_state(2, np.uint64)[0])
