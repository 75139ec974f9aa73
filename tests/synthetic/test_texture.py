"""The texture engine's parts through their public names: parameters (params), layouts, nuclei, stains and
fields, put together by texture.render_block."""

from __future__ import annotations

import numpy as np

from monai_wsseg.synthetic.fields import cell_uniforms
from monai_wsseg.synthetic.generator import render_texture
from monai_wsseg.synthetic.layouts import SlideLayout
from monai_wsseg.synthetic.nuclei import populations
from monai_wsseg.synthetic.params import GLASS, TUMOR, TextureParams
from monai_wsseg.synthetic.stains import NoiseBank, Stain, kind_tables
from monai_wsseg.synthetic.texture import render_block, slide_key


def test_texture_params_variant():
    base = TextureParams()
    v1, v1b, v2 = base.variant(1), base.variant(1), base.variant(2)
    assert v1 == v1b and v1 != base and v1 != v2
    assert base.variant(5, strength=0.0) == base
    assert min(v1.tumor_diameter_um) >= 12.0 and max(v1.lymph_diameter_um) < 10.0
    a = render_texture("tumor", 128, seed=0, params=base)
    b = render_texture("tumor", 128, seed=0, params=v1)
    assert np.abs(a.astype(int) - b).mean() > 3


def test_cell_randomness_depends_only_on_the_cell():
    i, j = np.array([0, 5, -3, 7]), np.array([1, 2, 9, -4])
    together = cell_uniforms(42, i, j, 3)
    alone = np.concatenate([cell_uniforms(42, i[k : k + 1], j[k : k + 1], 3) for k in range(4)], axis=1)
    np.testing.assert_array_equal(together, alone)
    assert together.shape == (3, 4) and ((together >= 0) & (together < 1)).all()
    assert not np.array_equal(cell_uniforms(43, i, j, 3), together)


def test_a_block_is_drawn_the_same_whatever_blocks_surround_it():
    """Nuclei and noise come from the block's own coordinates, so any block of a slide can be rendered
    alone (the generator renders blocks in parallel, in any order)."""
    p = TextureParams()
    rng = np.random.default_rng([7, 1])
    layout = SlideLayout(640, 512, 0.5, True, rng, p, (0.3, 0.4), slide_key(7))
    stain, bank, tables, pops = Stain(p, rng), NoiseBank(rng, 0.5), kind_tables(p), populations(p)
    whole = np.empty((512, 640, 3), np.uint8)
    kinds = render_block(layout, stain, bank, tables, pops, 0, 0, 640, 512, whole)
    assert (kinds == GLASS).any() and (kinds == TUMOR).any()
    part = np.empty((160, 200, 3), np.uint8)
    part_kinds = render_block(layout, stain, bank, tables, pops, 256, 192, 200, 160, part)
    np.testing.assert_array_equal(part_kinds, kinds[192:352, 256:456])
    np.testing.assert_array_equal(part, whole[192:352, 256:456])
