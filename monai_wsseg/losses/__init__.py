"""Losses: the multi-layer pseudo-mask loss of paper B (:mod:`monai_wsseg.losses.pseudo`).

The MIL loss of paper A lives with its method, in :mod:`monai_wsseg.mil.loss`.
"""

from monai_wsseg.losses.pseudo import MultiLayerPseudoLoss

__all__ = ["MultiLayerPseudoLoss"]
