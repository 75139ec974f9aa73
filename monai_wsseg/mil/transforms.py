"""Transforms of MIL bags: per-patch augmentation and per-channel standardisation.

Paper A augments "independently on each image, with random rotations and flips [...] and color jitter" and
applies "channel-wise standard scaling from training averages and variances"; validation and test bags
are only standardised. A bag is the ``(N, 3, P, P)`` uint8 tensor that
:class:`~monai_wsseg.mil.bags.SlideBagDataset` hands to its ``transform``:

* :class:`RandBagAugment` — per patch: one of the 8 dihedral transforms (rot90 × horizontal flip), then
  optional HED stain jitter (:func:`monai_wsseg.wsi.stain.hed_jitter`, off by default), then colour jitter
  (brightness, contrast, saturation, hue), then optional focus blur (off by default); output float32 in [0, 1].
* :class:`BagStandardize` — ``(x / 255 - mean) / std`` per channel, statistics in [0, 1] units
  (``scripts/compute_stats.py`` computes them on the training split).
* :func:`bag_transform` — both (training) or standardisation only (evaluation), as a MONAI ``Compose``
  that a bundle config can name::

      "transform": {"_target_": "monai_wsseg.mil.transforms.bag_transform", "train": true,
                    "mean": [0.70, 0.55, 0.68], "std": [0.15, 0.18, 0.13]}

Randomness comes from the transform's own ``R`` (a ``numpy.random.RandomState``), so
``set_random_state(seed)`` makes it reproducible and ``monai.data.DataLoader`` gives every worker a
different stream (a plain ``torch.utils.data.DataLoader`` gives them all the same one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import Compose, Randomizable, Transform
from typing_extensions import override

from monai_wsseg.wsi.stain import hed_jitter

__all__ = ["BagStandardize", "RandBagAugment", "bag_transform", "gaussian_blur", "hue_matrices"]

# Luma weights: the Y row of YIQ, also the grey of the contrast and saturation steps (torchvision uses the
# same weights, to 4 digits, in rgb_to_grayscale), so one "grey" is kept by every step.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114],
     [0.596, -0.274, -0.322],
     [0.211, -0.523, 0.312]],
    dtype=np.float64,
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_LUMA = _RGB_TO_YIQ[0]


def _as_bag(bag: torch.Tensor | np.ndarray, who: str) -> torch.Tensor:
    bag = torch.as_tensor(bag)
    if bag.ndim != 4 or bag.shape[1] != 3:
        raise ValueError(f"{who}: expected a bag (N, 3, P, P), got shape {tuple(bag.shape)}")
    if bag.dtype != torch.uint8 and not bag.is_floating_point():
        raise ValueError(f"{who}: expected a uint8 or floating-point bag, got {bag.dtype}")
    return bag


def _check_unit_range(bag: torch.Tensor, who: str) -> None:
    """Refuse float bags outside [0, 1]: most likely already standardised, i.e. transforms in the wrong order."""
    if bag.numel() == 0:
        return
    lo, hi = torch.aminmax(bag)
    if not (float(lo) >= 0.0 and float(hi) <= 1.0):  # also catches NaN
        raise ValueError(
            f"{who}: a float bag must hold values in [0, 1], got min {float(lo):g}, max {float(hi):g} "
            "(augment before standardising)"
        )


def hue_matrices(shifts: np.ndarray | Sequence[float]) -> np.ndarray:
    """RGB → RGB matrices ``(K, 3, 3)`` (float64) that rotate the chroma plane of YIQ by ``2π·shift``.

    ``shift`` is a fraction of a full turn, as torchvision's ``adjust_hue`` factor, with the same sign
    (positive turns red towards yellow, i.e. the I→Q rotation is clockwise). Luma ``Y`` and chroma magnitude
    are kept, so grey pixels (``R = G = B``, zero chroma) are fixed points. HSV hue (torchvision) keeps
    max/min of R, G, B instead, so the two shifts agree in direction and size but not pixel for pixel.
    Built as ``I + YIQ⁻¹·(Rot − I)·YIQ`` so that a shift of 0 gives the identity exactly, not up to the
    rounding of ``YIQ⁻¹·YIQ``.
    """
    theta = -2.0 * math.pi * np.asarray(shifts, dtype=np.float64).reshape(-1)
    rot_minus_eye = np.zeros((theta.size, 3, 3))
    cos, sin = np.cos(theta), np.sin(theta)
    rot_minus_eye[:, 1, 1] = cos - 1.0
    rot_minus_eye[:, 2, 2] = cos - 1.0
    rot_minus_eye[:, 1, 2] = -sin
    rot_minus_eye[:, 2, 1] = sin
    return np.eye(3) + _YIQ_TO_RGB @ rot_minus_eye @ _RGB_TO_YIQ


def _check_jitter(name: str, value: float, upper: float) -> float:
    value = float(value)
    if not (0.0 <= value <= upper):
        raise ValueError(f"RandBagAugment: {name}={value} must lie in [0, {upper:g}]")
    return value


class RandBagAugment(Randomizable, Transform):
    """Independent random dihedral transform and colour jitter of every patch of a bag.

    Geometry: each patch gets a rotation by ``k·90°`` (``k`` uniform in 0..3, when ``rot90``) followed by a
    horizontal flip (probability ½, when ``flip``); with both, the 8 elements of the dihedral group are
    equally likely. Both parts are vectorised over the bag: one gather (through an ``(N, P·P)`` int64
    pixel table, 60 MB for 150 × 224²) and one batched matmul.

    Stain (Tellez et al. 2018), when ``hed_sigma`` or ``hed_bias`` > 0: each patch's H, E and DAB
    concentrations (Ruifrok–Johnston unmixing of its optical density) become ``c·a + b``, ``a ~ U[1 − hed_sigma,
    1 + hed_sigma]`` and ``b ~ U[−hed_bias, hed_bias]`` (OD units) per stain; a cohort whose slides differ in
    colour cast then cannot be told apart by colour alone. It runs after the geometry, before the colour jitter.

    Colour (torchvision ``ColorJitter`` ranges, fixed order brightness → contrast → saturation → hue):

    * brightness ``x·b``, ``b ~ U[1 − brightness, 1 + brightness]``;
    * contrast ``c·x + (1 − c)·m``, ``c ~ U[1 − contrast, 1 + contrast]``, ``m`` the patch's mean grey;
    * saturation ``s·x + (1 − s)·grey(x)``, ``s ~ U[1 − saturation, 1 + saturation]``;
    * hue: rotation of the YIQ chroma plane by ``2π·h``, ``h ~ U[−hue, hue]`` (see :func:`hue_matrices`).
      This is not torchvision's HSV hue shift (which needs a per-pixel HSV round trip): it is linear and
      keeps luma; the colour changes go the same way and are of the same size as torchvision's, but not
      pixel for pixel.

    All four steps are linear in the pixel values, so they are composed into one 3×3 matrix and offset per
    patch and applied with a single batched matmul; the result is clipped to [0, 1] once at the end. Unlike
    torchvision, nothing is clipped between steps, which only matters for pixels pushed out of [0, 1] by
    one step and back in by a later one.

    Args:
        rot90: random rotations by multiples of 90° (needs square patches).
        flip: random horizontal flips.
        brightness, contrast, saturation: jitter strengths in [0, 1]; 0 disables the step.
        hue: maximum hue shift in [0, 0.5] turns; 0 disables it.
        prob: probability that a patch is augmented at all (independently per patch); the others are
            only converted to float.
        hed_sigma: HED concentration scale jitter in [0, 1]; hed_bias: HED offset jitter in [0, 1] OD
            units. Both 0 (the default) disable the step, and then no draw is made for it, so the random
            stream and the output are those of a RandBagAugment without these arguments.
        blur_sigma: largest focus blur, a Gaussian standard deviation in patch pixels (``≤ 2``); each
            augmented patch draws ``σ ~ U[0, blur_sigma]``. A scanner with a softer focus than the training
            cohort's otherwise shows the network nuclei it never saw. 0 (the default) disables the step and
            its draws, as for the stain step. It runs last, on the jittered colours.

    Input: ``(N, 3, P, P)`` uint8, or floating point in [0, 1]. Output: ``(N, 3, P, P)`` float32 in [0, 1].
    """

    def __init__(
        self,
        rot90: bool = True,
        flip: bool = True,
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.1,
        hue: float = 0.02,
        prob: float = 1.0,
        hed_sigma: float = 0.0,
        hed_bias: float = 0.0,
        blur_sigma: float = 0.0,
    ) -> None:
        self.rot90, self.flip = bool(rot90), bool(flip)
        self.brightness = _check_jitter("brightness", brightness, 1.0)
        self.contrast = _check_jitter("contrast", contrast, 1.0)
        self.saturation = _check_jitter("saturation", saturation, 1.0)
        self.hue = _check_jitter("hue", hue, 0.5)
        self.prob = _check_jitter("prob", prob, 1.0)
        self.hed_sigma = _check_jitter("hed_sigma", hed_sigma, 1.0)
        self.hed_bias = _check_jitter("hed_bias", hed_bias, 1.0)
        self.blur_sigma = _check_jitter("blur_sigma", blur_sigma, 2.0)
        self.colour = any(v > 0 for v in (self.brightness, self.contrast, self.saturation, self.hue))
        self.stain = self.hed_sigma > 0 or self.hed_bias > 0
        # Per-patch draws of the last randomize(): geometry code k + 4·flip, colour factors, and HED
        # concentration scales and offsets (N, 3) each (identity when the stain step is off).
        self.codes = np.zeros(0, dtype=np.int64)
        self.factors = np.zeros((0, 4))
        self.hed_scale, self.hed_shift = np.ones((0, 3)), np.zeros((0, 3))
        self.sigmas = np.zeros(0)  # per-patch blur sigma in pixels (0: sharp)

    def randomize(self, data: int | torch.Tensor) -> None:
        """Draw the transforms of a bag of ``data`` patches (an int, or the bag itself)."""
        n = int(data) if isinstance(data, (int, np.integer)) else len(data)
        k = self.R.randint(0, 4, size=n) if self.rot90 else np.zeros(n, dtype=np.int64)
        f = self.R.randint(0, 2, size=n) if self.flip else np.zeros(n, dtype=np.int64)
        b, c, s = (self.R.uniform(1.0 - v, 1.0 + v, size=n) for v in (self.brightness, self.contrast, self.saturation))
        h = self.R.uniform(-self.hue, self.hue, size=n)
        factors = np.stack([b, c, s, h], axis=1)
        keep = self.R.uniform(size=n) >= self.prob  # always drawn, so prob does not shift the stream
        codes = k + 4 * f
        codes[keep] = 0
        factors[keep] = (1.0, 1.0, 1.0, 0.0)
        self.codes, self.factors = codes.astype(np.int64), factors
        # Drawn last and only when enabled, so configs without stain jitter keep their random stream.
        if self.stain:
            scale = self.R.uniform(1.0 - self.hed_sigma, 1.0 + self.hed_sigma, size=(n, 3))
            shift = self.R.uniform(-self.hed_bias, self.hed_bias, size=(n, 3))
            scale[keep], shift[keep] = 1.0, 0.0
        else:
            scale, shift = np.ones((n, 3)), np.zeros((n, 3))
        self.hed_scale, self.hed_shift = scale, shift
        sigmas = self.R.uniform(0.0, self.blur_sigma, size=n) if self.blur_sigma > 0 else np.zeros(n)
        sigmas[keep] = 0.0
        self.sigmas = sigmas

    def __call__(self, bag: torch.Tensor | np.ndarray, randomize: bool = True) -> torch.Tensor:
        """Augment ``bag`` ``(N, 3, P, P)``; ``randomize=False`` reuses the last draws (same N)."""
        bag = _as_bag(bag, "RandBagAugment")
        if self.rot90 and bag.shape[-1] != bag.shape[-2]:
            raise ValueError(
                f"RandBagAugment: rot90 needs square patches, got {bag.shape[-2]}×{bag.shape[-1]} "
                "(use rot90=False, or crop the patches square)"
            )
        if bag.is_floating_point():
            _check_unit_range(bag, "RandBagAugment")
        if randomize:
            self.randomize(bag.shape[0])
        elif len(self.codes) != bag.shape[0]:
            raise ValueError(f"RandBagAugment: last draws are for {len(self.codes)} patches, bag has {bag.shape[0]}")
        # Geometry first, on the input dtype: for uint8 that moves a quarter of the bytes of float32.
        out = _dihedral(bag, self.codes)
        out = out.to(torch.float32, copy=out is bag)  # the output never aliases the caller's tensor
        if bag.dtype == torch.uint8:
            out.div_(255.0)
        if self.stain:
            out = hed_jitter(out, self.hed_scale, self.hed_shift)
        if self.colour:
            out = _colour_jitter(out, self.factors)
        if self.blur_sigma > 0:
            out = gaussian_blur(out, self.sigmas)
        return out


_PERMS: dict[tuple[int, str], torch.Tensor] = {}


def _dihedral_perms(p: int, device: torch.device) -> torch.Tensor:
    """``(8, p·p)`` int64: row ``code`` lists, for each output pixel, the input pixel it takes (cached)."""
    key = (p, str(device))
    if key not in _PERMS:
        grid = torch.arange(p * p, device=device).view(p, p)
        rows = []
        for code in range(8):
            view = torch.rot90(grid, code % 4, dims=(0, 1))
            rows.append((view.flip(-1) if code >= 4 else view).reshape(-1))
        _PERMS[key] = torch.stack(rows)
    return _PERMS[key]


def _dihedral(bag: torch.Tensor, codes: np.ndarray) -> torch.Tensor:
    """Patch ``i`` rotated by ``codes[i] % 4`` quarter turns, then flipped left-right if ``codes[i] >= 4``."""
    if not codes.any():
        return bag
    n, c, h, w = bag.shape
    if h != w:  # flips only (codes 0 and 4): no pixel table needed
        out = bag.clone()
        flipped = torch.from_numpy(np.flatnonzero(codes >= 4)).to(bag.device)
        out[flipped] = bag[flipped].flip(-1)
        return out
    # One gather through a per-patch pixel table. A loop of per-patch rot90 copies is faster on an idle
    # CPU (~15 vs ~70 ms for 150 × 224²) but it is 300 small multi-threaded ops, and it slowed to ~2.7 s
    # when other processes held the cores; the gather is 1 op and stays < 0.1 s.
    index = _dihedral_perms(h, bag.device)[torch.from_numpy(codes).to(bag.device)]
    return torch.gather(bag.reshape(n, c, h * w), 2, index.unsqueeze(1).expand(n, c, h * w)).view(n, c, h, w)


def gaussian_blur(bag: torch.Tensor, sigmas: np.ndarray) -> torch.Tensor:
    """Blur patch ``i`` of a float bag ``(N, C, P, P)`` with a Gaussian of std ``sigmas[i]`` pixels (0: kept).

    One separable, depthwise convolution per axis for the whole bag (a kernel per patch and channel, radius
    ``ceil(3·max σ)``), with reflected borders so that a patch's edge is not darkened by padding.
    """
    sig = np.asarray(sigmas, np.float64)
    top = float(sig.max(initial=0.0))
    if top <= 0:
        return bag
    n, c, h, w = bag.shape
    radius = max(1, math.ceil(3.0 * top))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    safe = np.where(sig > 0, sig, 1.0)[:, None]
    kernels = np.where(sig[:, None] > 0, np.exp(-0.5 * (x / safe) ** 2), (x == 0).astype(np.float64))
    kernels /= kernels.sum(axis=1, keepdims=True)
    weight = torch.from_numpy(np.repeat(kernels, c, axis=0)).to(device=bag.device, dtype=bag.dtype)
    flat = bag.reshape(1, n * c, h, w)
    padded = torch.nn.functional.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = torch.nn.functional.conv2d(padded, weight.view(n * c, 1, 1, -1), groups=n * c)
    padded = torch.nn.functional.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = torch.nn.functional.conv2d(padded, weight.view(n * c, 1, -1, 1), groups=n * c)
    return flat.view(n, c, h, w)


def _colour_jitter(bag: torch.Tensor, factors: np.ndarray) -> torch.Tensor:
    """Apply per-patch ``(brightness, contrast, saturation, hue)`` factors ``(N, 4)`` to a float bag in [0, 1].

    The steps compose to ``y = c·b·(H·S)·x + (1 − c)·b·m·(H·S)·1`` with ``m`` the mean grey of the input
    patch (brightness scales it by ``b``), ``S`` the saturation and ``H`` the hue matrix; then clip.
    """
    n = bag.shape[0]
    b, c, s, h = (factors[:, j] for j in range(4))
    grey = np.broadcast_to(_LUMA, (n, 3))[:, None, :]  # (n, 1, 3): every output channel takes the luma
    sat = s[:, None, None] * np.eye(3) + (1.0 - s)[:, None, None] * grey
    hs = hue_matrices(h) @ sat
    # float32 mean: torch sums in cascaded blocks, accurate to ~1e-7 here, and 20x faster than a float64 pass.
    means = bag.reshape(n, 3, -1).mean(dim=-1).double().cpu().numpy()  # (n, 3) channel means
    m = means @ _LUMA
    matrix = (c * b)[:, None, None] * hs
    offset = ((1.0 - c) * b * m)[:, None] * hs.sum(axis=2)
    flat = bag.reshape(n, 3, -1)
    out = torch.baddbmm(
        torch.from_numpy(offset[:, :, None]).to(device=bag.device, dtype=torch.float32),
        torch.from_numpy(matrix).to(device=bag.device, dtype=torch.float32),
        flat,
    )
    return out.clamp_(0.0, 1.0).reshape(bag.shape)


def _check_stats(name: str, values: Sequence[float], *, positive: bool) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"BagStandardize: {name} must be 3 numbers (R, G, B), got {values!r}") from None
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"BagStandardize: {name} must be 3 finite numbers (R, G, B), got {values!r}")
    if positive and not all(v > 0 for v in vals):
        raise ValueError(f"BagStandardize: std must be > 0 in every channel, got {list(vals)}")
    # Statistics of [0, 1] data lie in [0, 1] (std in [0, 0.5]): larger values are 0-255 units.
    if not all(0.0 <= v <= 1.0 for v in vals):
        raise ValueError(
            f"BagStandardize: {name} {list(vals)} must be in [0, 1] units (divide 0-255 statistics by 255)"
        )
    return vals


class BagStandardize(Transform):
    """Per-channel standard scaling ``(x / 255 − mean) / std`` of a bag.

    Args:
        mean, std: per-channel (R, G, B) statistics of the training patches in [0, 1] units, e.g. from
            ``scripts/compute_stats.py``; ``std > 0``.

    Input: ``(N, 3, P, P)`` uint8 (divided by 255), or floating point already in [0, 1] (not divided).
    Output: ``(N, 3, P, P)`` float32. Never modifies its input.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = _check_stats("mean", mean, positive=False)
        self.std = _check_stats("std", std, positive=True)
        std64, mean64 = np.asarray(self.std), np.asarray(self.mean)
        # y = x·scale + bias in one pass; float64 constants keep it within float32 rounding of the formula.
        self._bias = torch.from_numpy(-mean64 / std64).to(torch.float32).view(1, 3, 1, 1)
        self._scale_unit = torch.from_numpy(1.0 / std64).to(torch.float32).view(1, 3, 1, 1)
        self._scale_uint8 = torch.from_numpy(1.0 / (255.0 * std64)).to(torch.float32).view(1, 3, 1, 1)

    @override
    def __call__(self, bag: torch.Tensor | np.ndarray) -> torch.Tensor:
        bag = _as_bag(bag, "BagStandardize")
        scale = self._scale_uint8 if bag.dtype == torch.uint8 else self._scale_unit
        return torch.addcmul(self._bias.to(bag.device), bag.to(torch.float32), scale.to(bag.device))


def bag_transform(train: bool, mean: Sequence[float], std: Sequence[float], **augment_kwargs) -> Compose:
    """The bag transform of a split: :class:`RandBagAugment` then :class:`BagStandardize` when ``train``,
    standardisation only otherwise (paper A: no augmentation at validation / test).

    ``augment_kwargs`` go to :class:`RandBagAugment`; they are validated but unused when ``not train``, so
    a config may share one set of arguments between its training and evaluation transforms.
    Input: ``(N, 3, P, P)`` uint8 bag; output: float32 standardised bag of the same shape. As in any MONAI
    ``Compose``, a member's ``ValueError`` (e.g. non-square patches) surfaces as a ``RuntimeError`` whose
    ``__cause__`` it is.
    """
    augment = RandBagAugment(**augment_kwargs)
    standardize = BagStandardize(mean, std)
    return Compose([augment, standardize] if train else [standardize])
