"""Paper B's (WSSS) augmentation of a patch item: one random flip / quarter turn for the image and its masks,
and (CPU profile) a random stain jitter of the image.

Paper B augments with horizontal and vertical flips; :class:`RandFlipRot90d` adds the quarter turns and,
being a MONAI dictionary transform, moves ``image``, ``mask`` and ``pseudo`` of an item of
:mod:`monai_wsseg.wsss.patches` together. :class:`RandHEDJitterd` jitters the haematoxylin and eosin
concentrations of the image alone (:func:`monai_wsseg.wsi.stain.hed_jitter`, as the MIL bags are jittered).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable
from typing_extensions import override

from monai_wsseg.wsi.stain import RandStainAugment

__all__ = ["RandFlipRot90d", "RandHEDJitterd"]


class RandFlipRot90d(Randomizable, MapTransform):
    """The same random flip / rot90 on the last two (H, W) axes of every key (image and masks).

    Paper B augments with horizontal and vertical flips (p = 0.5 each); ``rot90=True`` adds a quarter
    turn k ~ U{0..3}, which with the flips covers all 8 symmetries of the square (tissue has no
    orientation). One draw per call is applied to all ``keys``, so an image ``(3, H, W)``, a mask
    ``(H, W)`` and pseudo masks ``(L, H, W)`` stay aligned. Tensors stay tensors, arrays stay
    (contiguous) arrays. Odd quarter turns swap H and W of non-square inputs.

    Randomness comes from ``self.R``: ``seed`` or ``set_random_state`` makes it reproducible, and
    ``monai.data.DataLoader`` reseeds it per worker.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = ("image", "mask", "pseudo"), flip: bool = True,
                 rot90: bool = True, prob: float = 1.0, seed: int | None = None,
                 allow_missing_keys: bool = True) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"RandFlipRot90d: prob must be in [0, 1], got {prob!r}")
        self.flip, self.rot90, self.prob = bool(flip), bool(rot90), float(prob)
        self.set_random_state(seed=seed)
        self._k, self._hflip, self._vflip = 0, False, False

    @override
    def randomize(self, data: Any = None) -> None:
        # all four numbers are always drawn, so options do not shift the random stream
        apply = self.R.rand() < self.prob
        h, v, k = self.R.rand() < 0.5, self.R.rand() < 0.5, int(self.R.randint(4))
        self._hflip = bool(apply and self.flip and h)
        self._vflip = bool(apply and self.flip and v)
        self._k = k if (apply and self.rot90) else 0

    @property
    def last(self) -> tuple[int, bool, bool]:
        """The last draw as (quarter turns, horizontal flip, vertical flip): flips first, then the turn."""
        return self._k, self._hflip, self._vflip

    def apply(self, x: Any) -> Any:
        """Apply the current draw to one array / tensor (``..., H, W``)."""
        if isinstance(x, torch.Tensor):
            if self._hflip:
                x = torch.flip(x, dims=(-1,))
            if self._vflip:
                x = torch.flip(x, dims=(-2,))
            return torch.rot90(x, self._k, dims=(-2, -1)) if self._k else x
        arr = np.asarray(x)
        if arr.ndim < 2:
            raise ValueError(f"RandFlipRot90d: expected an array with (H, W) last, got shape {arr.shape}")
        if self._hflip:
            arr = arr[..., ::-1]
        if self._vflip:
            arr = arr[..., ::-1, :]
        if self._k:
            arr = np.rot90(arr, self._k, axes=(-2, -1))
        # negative strides would make torch.from_numpy / default_collate fail later
        return np.ascontiguousarray(arr)

    @override
    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            d[key] = self.apply(d[key])
        return d


class RandHEDJitterd(Randomizable, MapTransform):
    """Random HED concentration jitter of a ``(3, H, W)`` float image in [0, 1] (masks untouched).

    Each call draws factors ``a ~ U[1 − sigma, 1 + sigma]`` and offsets ``b ~ U[−bias, bias]`` (OD units) for
    the haematoxylin, eosin and DAB concentrations (:func:`~monai_wsseg.wsi.stain.hed_jitter`). Paper B has no
    colour augmentation (``sigma = bias = 0``, the default, returns the image unchanged); with patches whose
    colour varies more than their tissue does (a colour cast per patch, another lab's stains) a classifier
    from random weights otherwise learns colour. Randomness comes from ``self.R``, as for :class:`RandFlipRot90d`.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = ("image",), sigma: float = 0.0, bias: float = 0.0,
                 seed: int | None = None, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        for name, value in (("sigma", sigma), ("bias", bias)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"RandHEDJitterd: {name} must be in [0, 1], got {value!r}")
        self.sigma, self.bias = float(sigma), float(bias)
        self._jitter = RandStainAugment(self.sigma, self.bias)  # the MIL bags' jitter, on a bag of one image
        self.set_random_state(seed=seed)

    @override
    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandHEDJitterd:
        super().set_random_state(seed, state)
        self._jitter.R = self.R  # one stream: the draws are the jitter's
        return self

    @override
    def randomize(self, data: Any = None) -> None:
        self._jitter.randomize(1)

    @override
    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if self.sigma == 0.0 and self.bias == 0.0:
            return d
        self.randomize()
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
                raise ValueError(f"RandHEDJitterd: {key!r} must be a (3, H, W) float image in [0, 1], got "
                                 f"{image.dtype} {tuple(image.shape)}")
            d[key] = self._jitter(image[None], randomize=False)[0]
        return d
