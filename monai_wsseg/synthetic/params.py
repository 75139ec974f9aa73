"""Parameters of the synthetic tissue: the tissue kinds, the patch-set classes and :class:`TextureParams`.

The texture engine (:mod:`monai_wsseg.synthetic.texture`) draws every kind from these numbers; lengths are
in microns and stain amounts in optical density. The mask colours of the patch sets are the datasets' own
(:data:`monai_wsseg.io.palettes.CLASS_COLOURS`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = ["BENIGN", "GLAND", "GLASS", "LYMPH", "NECROSIS", "PATCH_CLASS_KINDS", "STROMA", "TAS", "TISSUE_KINDS",
           "TUMOR", "TextureParams"]

#: Tissue kind codes, as stored in kind maps.
GLASS, STROMA, GLAND, LYMPH, TUMOR, NECROSIS, TAS, BENIGN = range(8)
#: Names of the tissue kinds, indexed by the codes used in kind maps.
TISSUE_KINDS = ("glass", "stroma", "gland", "lymphoid", "tumor", "necrosis", "tumor_stroma", "benign_epithelium")
#: Patch-set class names (LUAD-HistoSeg and BCSS-WSSS spellings) -> tissue kind code.
PATCH_CLASS_KINDS = {"TE": TUMOR, "TUM": TUMOR, "NEC": NECROSIS, "LYM": LYMPH, "TAS": TAS, "STR": TAS}


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
    # lymphoid share of a normal slide (default: tumor_fraction)
    lymph_fraction_normal: tuple[float, float] | None = None
    colour_cast: float = 0.0  # per-slide relative std of each channel's optical density (scanner / stain batch)
    blur_um: float = 0.0  # focus blur: Gaussian sigma in microns, applied to the rendered slide

    def variant(self, seed: int, strength: float = 1.0) -> TextureParams:
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
