"""Stain maths shared by training and inference: optical density, HED jitter, per-slide normalisation.

Optical density (OD, base-10, Beer–Lambert) of an 8-bit value ``v`` is ``−log10((v + 1) / 256)``, and of
a float ``x`` in [0, 1] ``−log10((255·x + 1) / 256)``: the ``+1`` keeps black finite (OD ≤ log10 256 ≈ 2.41)
and white glass (255) has OD exactly 0. :func:`od_to_rgb` inverts it.

* :func:`hed_jitter` / :class:`RandStainAugment`: Tellez et al. 2018 HED augmentation. Each patch's OD is
  unmixed with the Ruifrok–Johnston matrix :data:`HED_STAINS`, every stain concentration becomes
  ``c·a + b`` (``a ~ U[1 − sigma, 1 + sigma]``, ``b ~ U[−bias, bias]`` in OD units), and it is mixed back.
  Unmix, jitter and remix compose to one 3×3 matrix and offset per patch: one batched matmul per bag.
* :class:`ReinhardNormalizer` (mean and std of Reinhard's lαβ space) and :class:`MacenkoNormalizer`
  (stain vectors from the OD plane, 99th-percentile concentrations). ``fit(pixels)`` gives a JSON-ready
  reference; ``Normalizer(reference).for_slide(pixels)`` fits the source slide once, from the tissue
  pixels of a low-resolution read, and returns a :class:`StainTransform` applied unchanged to every tile,
  so tiles of one slide share one colour map and show no seams.
* :func:`stain_normalizer`: the factory a bundle config names (``method`` and ``reference``).

Tissue pixels are those whose OD summed over R, G, B exceeds :data:`TISSUE_OD` (0.15): glass, even tinted
or grey (each channel ≥ ~225), stays below it; the palest stroma is above.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from monai.transforms import Randomizable, Transform
from typing_extensions import override

__all__ = [
    "HED_STAINS", "TISSUE_OD", "MacenkoNormalizer", "RandStainAugment", "ReinhardNormalizer", "StainTransform",
    "fit_slide_stain", "hed_jitter", "od_to_rgb", "rgb_to_od", "slide_glass", "stain_normalizer", "tissue_pixels",
]

logger = logging.getLogger(__name__)

#: Ruifrok & Johnston (2001) OD vectors of hematoxylin, eosin and DAB, rows normalised to unit length.
HED_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
HED_STAINS /= np.linalg.norm(HED_STAINS, axis=1, keepdims=True)
#: Summed R+G+B optical density above which a pixel counts as tissue.
TISSUE_OD = 0.15
#: Fewest tissue pixels a fit accepts: below this the percentiles and moments are noise.
MIN_PIXELS = 100
_LN10 = math.log(10.0)
# Reinhard et al. (2001): RGB → LMS cone response, then log10(LMS) → decorrelated lαβ.
_RGB_TO_LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
_LMS_TO_RGB = np.linalg.inv(_RGB_TO_LMS)
_LOG_LMS_TO_LAB = np.diag([3**-0.5, 6**-0.5, 2**-0.5]) @ np.array([[1.0, 1, 1], [1, 1, -2], [1, -1, 0]])


@overload
def rgb_to_od(rgb: np.ndarray) -> np.ndarray: ...
@overload
def rgb_to_od(rgb: torch.Tensor) -> torch.Tensor: ...
def rgb_to_od(rgb: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Optical density of uint8 values (0–255) or floats in [0, 1]; same shape, float32 (float64 kept)."""
    if isinstance(rgb, torch.Tensor):
        x = rgb.float() if rgb.dtype == torch.uint8 else rgb * 255.0
        return -torch.log10((x + 1.0) / 256.0)
    rgb = np.asarray(rgb)
    v = rgb.astype(np.float32) if rgb.dtype == np.uint8 else rgb * 255.0
    return -np.log10((v + 1.0) / 256.0)


def od_to_rgb(od: np.ndarray | torch.Tensor, uint8: bool = False) -> np.ndarray | torch.Tensor:
    """Inverse of :func:`rgb_to_od`: floats clipped to [0, 1], or rounded uint8 when ``uint8``."""
    if isinstance(od, torch.Tensor):
        v = (256.0 * torch.pow(10.0, -od) - 1.0).clamp_(0.0, 255.0)
        return v.round_().to(torch.uint8) if uint8 else v / 255.0
    v = np.clip(256.0 * np.power(10.0, -np.asarray(od)) - 1.0, 0.0, 255.0)
    return np.rint(v).astype(np.uint8) if uint8 else v / 255.0


def tissue_pixels(rgb: np.ndarray, max_pixels: int | None = None, seed: int = 0) -> np.ndarray:
    """``(M, 3)`` uint8: the pixels of ``rgb`` (``(..., 3)`` uint8) with OD sum > :data:`TISSUE_OD`.

    ``max_pixels`` keeps a fixed-seed random subset of at most that many (a large slide's read can hold
    tens of millions; moments and percentiles need far fewer).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim < 2 or rgb.shape[-1] != 3:
        raise ValueError(f"tissue_pixels: expected uint8 pixels (..., 3), got {rgb.dtype} {rgb.shape}")
    flat = rgb.reshape(-1, 3)
    lut = -np.log10((np.arange(256) + 1.0) / 256.0)  # exact per-value OD, no float pass over the pixels
    keep = flat[(lut[flat[:, 0]] + lut[flat[:, 1]] + lut[flat[:, 2]]) > TISSUE_OD]
    if max_pixels is not None and len(keep) > max_pixels:
        keep = keep[np.sort(np.random.default_rng(seed).choice(len(keep), max_pixels, replace=False))]
    return keep


def _fit_pixels(pixels: np.ndarray, who: str) -> np.ndarray:
    """Tissue pixels of a fit's input, at most 2 M of them, or a ValueError saying why they do not do."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3:
        raise ValueError(f"{who}: expected (M, 3) uint8 tissue pixels, got {pixels.dtype} {pixels.shape}")
    kept = tissue_pixels(pixels, max_pixels=2_000_000)
    if len(kept) < MIN_PIXELS:
        raise ValueError(f"{who}: only {len(kept)} tissue pixels (OD sum > {TISSUE_OD}), need ≥ {MIN_PIXELS}")
    return kept


# ---------------------------------------------------------------------------------------- HED jitter
def _hed_matrices(scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch ``(N, 3, 3)`` matrices and ``(N, 3)`` offsets acting on column OD vectors.

    With stain rows ``S``: ``c = od·S⁻¹``, ``c' = c·a + b``, ``od' = c'·S``; transposed for columns. Built as
    ``I + (S⁻¹·diag(a − 1)·S)ᵀ`` so that ``a = 1`` gives the identity exactly, not up to rounding.
    """
    inv = np.linalg.inv(HED_STAINS)
    delta = inv[None] * (scale - 1.0)[:, None, :] @ HED_STAINS  # S⁻¹·diag(a − 1)·S per patch
    return np.eye(3) + delta.transpose(0, 2, 1), shift @ HED_STAINS


def hed_jitter(bag: torch.Tensor, scale: np.ndarray, shift: np.ndarray) -> torch.Tensor:
    """Per-patch HED concentration jitter of a float bag ``(N, 3, P, P)`` in [0, 1].

    Args:
        bag: float bag, values in [0, 1].
        scale, shift: ``(N, 3)`` factors ``a`` and offsets ``b`` (OD units) of the H, E, DAB concentrations.

    Returns a new float32 bag in [0, 1]; patches with ``a = 1, b = 0`` are copied bit for bit.
    """
    n = bag.shape[0]
    scale, shift = np.asarray(scale, np.float64), np.asarray(shift, np.float64)
    if scale.shape != (n, 3) or shift.shape != (n, 3):
        raise ValueError(f"hed_jitter: scale and shift must be ({n}, 3), got {scale.shape} and {shift.shape}")
    same = np.all(scale == 1.0, axis=1) & np.all(shift == 0.0, axis=1)
    if same.all():
        return bag.to(torch.float32, copy=True)
    matrix, offset = _hed_matrices(scale, shift)
    # In natural logs with the constants folded (log and exp are ~2x faster than log10 and pow(10, x)):
    # with u = ln(255·x + 1), od = (ln256 − u)/ln10, so 255·x' + 1 = exp(A·u + ln256·(1 − A·1) − ln10·offset).
    k = math.log(256.0) * (1.0 - matrix.sum(axis=2)) - _LN10 * offset
    u = bag.reshape(n, 3, -1).to(torch.float32).mul(255.0).add_(1.0).log_()
    out = torch.baddbmm(torch.from_numpy(k[:, :, None]).to(u), torch.from_numpy(matrix).to(u), u)
    out = out.exp_().sub_(1.0).div_(255.0).clamp_(0.0, 1.0).reshape(bag.shape)
    if same.any():  # the OD round trip is exact only up to rounding: copy untouched patches as they were
        keep = torch.from_numpy(np.flatnonzero(same)).to(bag.device)
        out[keep] = bag[keep].to(torch.float32)
    return out


def _unit(name: str, value: float, who: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{who}: {name}={value} must lie in [0, 1]")
    return value


class RandStainAugment(Randomizable, Transform):
    """Independent HED jitter (:func:`hed_jitter`) of every patch of a bag.

    Args:
        sigma: concentration factors ``a ~ U[1 − sigma, 1 + sigma]``, in [0, 1].
        bias: concentration offsets ``b ~ U[−bias, bias]`` in OD units, in [0, 1].

    Input ``(N, 3, P, P)`` uint8 or float in [0, 1]; output float32 in [0, 1]. Draws come from ``self.R``.
    """

    def __init__(self, sigma: float = 0.05, bias: float = 0.05) -> None:
        self.sigma = _unit("sigma", sigma, "RandStainAugment")
        self.bias = _unit("bias", bias, "RandStainAugment")
        self.scale, self.shift = np.ones((0, 3)), np.zeros((0, 3))

    def randomize(self, data: int) -> None:
        """Draw ``(data, 3)`` factors and offsets."""
        self.scale = self.R.uniform(1.0 - self.sigma, 1.0 + self.sigma, size=(int(data), 3))
        self.shift = self.R.uniform(-self.bias, self.bias, size=(int(data), 3))

    @override
    def __call__(self, bag: torch.Tensor | np.ndarray, randomize: bool = True) -> torch.Tensor:
        bag = torch.as_tensor(bag)
        if bag.ndim != 4 or bag.shape[1] != 3:
            raise ValueError(f"RandStainAugment: expected a bag (N, 3, P, P), got shape {tuple(bag.shape)}")
        if randomize:
            self.randomize(bag.shape[0])
        x = bag.float() / 255.0 if bag.dtype == torch.uint8 else bag
        return hed_jitter(x, self.scale, self.shift)


# ---------------------------------------------------------------------------------------- normalisation
class StainTransform:
    """A slide's fitted colour map, the same for each of its pixels (hence for every tile).

    ``kind="od"``: ``od' = matrix·od + offset`` on optical density (Macenko). ``kind="lab"``: the affine
    map acts on ``log10(LMS)`` of ``(v + 1) / 256`` (Reinhard's lαβ is linear in it). Call on a uint8
    ``(H, W, 3)`` numpy tile, or a uint8 ``(3, H, W)`` / ``(B, 3, H, W)`` tensor on any device; returns
    the same type, layout and device, uint8.
    """

    def __init__(self, kind: str, matrix: np.ndarray, offset: np.ndarray) -> None:
        if kind not in ("od", "lab"):
            raise ValueError(f"StainTransform: kind must be 'od' or 'lab', got {kind!r}")
        self.kind = kind
        self.matrix = np.asarray(matrix, np.float64).reshape(3, 3)
        self.offset = np.asarray(offset, np.float64).reshape(3)
        # Natural logs with the /256 and base-10 scalings folded into one constant: a tile then costs one
        # log, one exp and 2-3 channel mixes (log10 and pow(10, x) are ~2x slower than log and exp).
        #   od:  out + 1 = exp(M·ln(v + 1) + k),           k = ln256·(1 − M·1) − ln10·offset
        #   lab: out + 1 = A⁻¹·exp(M·ln(A·(v + 1)) + k),   k = ln256·(1 − M·1) + ln10·offset
        sign = -1.0 if kind == "od" else 1.0
        self._k = math.log(256.0) * (1.0 - self.matrix.sum(axis=1)) + sign * _LN10 * self.offset

    @property
    def params(self) -> dict[str, Any]:
        """JSON-ready description (for run logs)."""
        return {"kind": self.kind, "matrix": self.matrix.tolist(), "offset": self.offset.tolist()}

    @staticmethod
    def _mix(m: np.ndarray, x: torch.Tensor, offset: np.ndarray | None = None) -> torch.Tensor:
        # Channel mixing as separate elementwise products and sums with Python scalars, not a matmul nor
        # a fused multiply-add: every pixel is then rounded the same way whatever the tensor's size, so a
        # pixel's value never depends on the tile it is in.
        c = x.unbind(-2)
        rows = [c[0] * float(m[i, 0]) + c[1] * float(m[i, 1]) + c[2] * float(m[i, 2]) for i in range(3)]
        if offset is not None:
            rows = [r + float(o) for r, o in zip(rows, offset, strict=True)]
        return torch.stack(rows, dim=-2)

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., 3, K)`` → mapped uint8 ``(..., 3, K)``."""
        v = x.float() + 1.0
        if self.kind == "od":
            out = torch.exp(self._mix(self.matrix, torch.log(v), self._k))
        else:
            lms = torch.exp(self._mix(self.matrix, torch.log(self._mix(_RGB_TO_LMS, v)), self._k))
            out = self._mix(_LMS_TO_RGB, lms)
        return out.sub_(1.0).clamp_(0.0, 255.0).round_().to(torch.uint8)

    @overload
    def __call__(self, tile: np.ndarray) -> np.ndarray: ...
    @overload
    def __call__(self, tile: torch.Tensor) -> torch.Tensor: ...
    def __call__(self, tile: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map a uint8 ``(..., 3)`` array or ``(B, 3, H, W)`` / ``(3, H, W)`` tensor; same type and shape back."""
        if isinstance(tile, torch.Tensor):
            if tile.dtype != torch.uint8 or tile.ndim not in (3, 4) or tile.shape[-3] != 3:
                raise ValueError(f"StainTransform: expected a uint8 (B, 3, H, W) tensor, got {tile.dtype} "
                                 f"{tuple(tile.shape)}")
            return self._channels_first(tile.reshape(*tile.shape[:-2], -1)).reshape(tile.shape)
        tile = np.asarray(tile)
        if tile.dtype != np.uint8 or tile.ndim < 2 or tile.shape[-1] != 3:
            raise ValueError(f"StainTransform: expected a uint8 (H, W, 3) tile, got {tile.dtype} {tile.shape}")
        flat = torch.from_numpy(np.ascontiguousarray(tile)).reshape(-1, 3).T
        return self._channels_first(flat).T.reshape(tile.shape).numpy()


def _rows_times(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for many rows ``x`` ``(M, 3)``, computed as ``(mᵀ·xᵀ)ᵀ``: numpy's matmul with an inner
    size of 3 skips BLAS and is ~20x slower than the transposed product."""
    return (m.T.astype(x.dtype) @ x.T).T


def _lab(pixels: np.ndarray) -> np.ndarray:
    """``(M, 3)`` float32 lαβ of uint8 pixels (of ``(v + 1) / 256``, so black is finite)."""
    # float32: its SIMD log is ~5x faster than float64's, and moments are accumulated in float64 anyway.
    rgb = (pixels.astype(np.float32) + 1.0) / 256.0
    return _rows_times(np.log10(_rows_times(rgb, _RGB_TO_LMS.T)), _LOG_LMS_TO_LAB.T)


def _vector(ref: dict, key: str, n: int, who: str, positive: bool = False) -> np.ndarray:
    try:
        value = np.asarray(ref[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{who}: reference needs {key!r} as numbers, got {ref.get(key)!r}") from None
    if value.size != n or not np.isfinite(value).all() or (positive and not (value > 0).all()):
        raise ValueError(f"{who}: reference {key!r} must be {n} finite{' positive' if positive else ''} "
                         f"numbers, got {value.tolist()}")
    return value


def _check_method(reference: Any, method: str, who: str) -> dict:
    if not isinstance(reference, dict):
        raise ValueError(f"{who}: reference must be a dict, got {type(reference).__name__}")
    if reference.get("method", method) != method:
        raise ValueError(f"{who}: reference is for method {reference.get('method')!r}, not {method!r}")
    return reference


class ReinhardNormalizer:
    """Reinhard et al. (2001): match per-channel mean and std of tissue pixels in lαβ space.

    ``reference``: ``{"method": "reinhard", "mean": [3], "std": [3]}`` from :meth:`fit`. The map is applied
    to every pixel of a tile, glass included (a hard tissue cut would draw edges), then clipped.
    """

    method = "reinhard"

    def __init__(self, reference: dict) -> None:
        ref = _check_method(reference, self.method, "ReinhardNormalizer")
        self.mean = _vector(ref, "mean", 3, "ReinhardNormalizer")
        self.std = _vector(ref, "std", 3, "ReinhardNormalizer", positive=True)

    @staticmethod
    def fit(pixels: np.ndarray) -> dict[str, Any]:
        """Reference of ``(M, 3)`` uint8 pixels (glass is dropped): lαβ mean and std of the tissue."""
        lab = _lab(_fit_pixels(pixels, "ReinhardNormalizer.fit"))
        std = lab.std(axis=0, dtype=np.float64)
        if not (std > 0).all():
            raise ValueError(f"ReinhardNormalizer.fit: a channel of the tissue pixels is constant (std {std.tolist()})")
        return {"method": "reinhard", "mean": lab.mean(axis=0, dtype=np.float64).tolist(), "std": std.tolist()}

    def for_slide(self, pixels: np.ndarray) -> StainTransform:
        """The colour map of a slide from its ``(M, 3)`` uint8 tissue pixels (a low-resolution read)."""
        source = self.fit(pixels)
        s = self.std / np.asarray(source["std"])
        shift = self.mean - s * np.asarray(source["mean"])
        inv = np.linalg.inv(_LOG_LMS_TO_LAB)
        # In log-LMS: L' = T⁻¹·(diag(s)·T·L + shift), written I + T⁻¹(diag(s) − I)T so that s = 1 is exact.
        return StainTransform("lab", np.eye(3) + inv @ np.diag(s - 1.0) @ _LOG_LMS_TO_LAB, inv @ shift)


class MacenkoNormalizer:
    """Macenko et al. (2009): unmix with the slide's own H and E vectors, rescale, remix with the reference's.

    Stain vectors: the OD of tissue pixels is projected on the plane of its two main singular vectors, and
    the directions at the 1st and 99th angle percentiles are the stains (the one redder in OD is H).
    Concentrations: least squares on those vectors; each stain is scaled by the ratio of its reference to
    source 99th percentiles. The whole map is one 3×3 matrix on OD (the out-of-plane residual is dropped;
    negative concentrations are kept rather than clipped, so the map stays linear and glass stays glass).

    ``reference``: ``{"method": "macenko", "stains": [[H], [E]], "max_concentrations": [2]}``.
    """

    method = "macenko"

    def __init__(self, reference: dict) -> None:
        ref = _check_method(reference, self.method, "MacenkoNormalizer")
        self.stains = _vector(ref, "stains", 6, "MacenkoNormalizer").reshape(2, 3)
        self.max_concentrations = _vector(ref, "max_concentrations", 2, "MacenkoNormalizer", positive=True)
        _check_stains(self.stains, "MacenkoNormalizer")

    @staticmethod
    def fit(pixels: np.ndarray, percentile: float = 1.0, glass: np.ndarray | None = None) -> dict[str, Any]:
        """Reference of ``(M, 3)`` uint8 pixels (glass is dropped): stain vectors and 99th-pct concentrations.

        ``glass``: the slide's background colour (RGB, 0-255; see :func:`slide_glass`). Its OD is taken off
        every pixel's first, so a tinted glass is not mistaken for stain (Beer-Lambert: the light that
        reaches the stains is the glass's, not white).
        """
        od = rgb_to_od(_fit_pixels(pixels, "MacenkoNormalizer.fit")).astype(np.float64) - _glass_od(glass)
        _, vectors = np.linalg.eigh(od.T @ od)  # ascending: the last two span the stain plane
        plane = vectors[:, [2, 1]] * np.where(vectors[:, [2, 1]].sum(axis=0) < 0, -1.0, 1.0)
        proj = _rows_times(od, plane)
        angle = np.arctan2(proj[:, 1], proj[:, 0])
        lo, hi = np.percentile(angle, [percentile, 100.0 - percentile])
        a, b = (plane @ [math.cos(t), math.sin(t)] for t in (lo, hi))
        stains = np.stack([a, b] if a[0] > b[0] else [b, a])
        stains /= np.linalg.norm(stains, axis=1, keepdims=True)
        _check_stains(stains, "MacenkoNormalizer.fit")
        conc = _rows_times(od, np.linalg.pinv(stains))  # (M, 2) least-squares concentrations
        max_c = np.percentile(conc, 99, axis=0)
        if not (max_c > 0).all():
            raise ValueError(f"MacenkoNormalizer.fit: a stain is absent (99th-percentile concentrations {max_c})")
        return {"method": "macenko", "stains": stains.tolist(), "max_concentrations": max_c.tolist()}

    def for_slide(self, pixels: np.ndarray, glass: np.ndarray | None = None) -> StainTransform:
        """The colour map of a slide from its ``(M, 3)`` uint8 tissue pixels (a low-resolution read).

        ``glass``: the slide's background colour, or ``None`` for white; the map takes its OD off before
        unmixing, so the output's glass is white whatever the slide's tint.
        """
        source = self.fit(pixels, glass=glass)
        src = np.asarray(source["stains"])
        ratio = self.max_concentrations / np.asarray(source["max_concentrations"])
        # Row OD vectors: od' = (od - g)·pinv(S_src)·diag(ratio)·S_ref; StainTransform takes column vectors.
        matrix = (np.linalg.pinv(src) @ np.diag(ratio) @ self.stains).T
        return StainTransform("od", matrix, -matrix @ _glass_od(glass))


def _glass_od(glass: np.ndarray | None) -> np.ndarray:
    """Per-channel OD ``(3,)`` of a glass colour (0 for ``None``, white)."""
    if glass is None:
        return np.zeros(3)
    g = np.asarray(glass, np.float64).reshape(3)
    return np.maximum(-np.log10((g + 1.0) / 256.0), 0.0)


def slide_glass(thumb: np.ndarray, tissue: np.ndarray, min_share: float = 0.02,
                min_value: float = 200.0) -> np.ndarray | None:
    """The colour of a slide's bare glass: the median ``(3,)`` RGB of the pixels of ``thumb`` outside ``tissue``.

    Args:
        thumb: ``(H, W, 3)`` uint8 low-resolution read; tissue: ``(H, W)`` bool tissue mask at that grid.
        min_share: fewest background pixels, as a share of the read, that make the median trustworthy.
        min_value: every channel of the glass must be at least this bright; a darker "glass" is tissue,
            ink or a scanning artefact, and the slide is then treated as on white glass.

    ``None`` when the slide shows too little glass or none that is bright enough.
    """
    background = np.asarray(thumb)[~np.asarray(tissue, bool)]
    if len(background) < min_share * tissue.size:
        return None
    glass = np.median(background.reshape(-1, 3), axis=0)
    return glass if bool((glass >= min_value).all()) else None


def _check_stains(stains: np.ndarray, who: str) -> None:
    cos = abs(float(stains[0] @ stains[1])) / float(np.linalg.norm(stains[0]) * np.linalg.norm(stains[1]))
    if not cos < 0.995:  # one stain only (or NaN): the unmixing would divide by ~0
        raise ValueError(
            f"{who}: the two stain vectors are almost parallel (cos {cos:.4f}); is only one stain present?"
        )


_METHODS: dict[str, type[ReinhardNormalizer] | type[MacenkoNormalizer]] = {
    "reinhard": ReinhardNormalizer, "macenko": MacenkoNormalizer}


def stain_normalizer(
    method: str | None, reference: dict | str | os.PathLike | None = None
) -> ReinhardNormalizer | MacenkoNormalizer | None:
    """The normaliser a config names: ``None`` for method ``None`` / ``"none"``, else Reinhard or Macenko.

    ``reference``: the method's reference dict, the whole ``compute_stats.py --stain_json`` dict (its
    ``method`` entry is used), or the path of that JSON file.
    """
    if method is None or str(method).lower() == "none":
        return None
    name = str(method).lower()
    if name not in _METHODS:
        raise ValueError(f"stain_normalizer: unknown method {method!r}; choose 'reinhard', 'macenko' or 'none'")
    hint = "run scripts/compute_stats.py --dataset_dir <cohort> --stain_json <path> on the training split"
    if reference is None:
        raise ValueError(f"stain_normalizer: method {name!r} needs a reference; {hint}")
    ref: Any = reference
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if not path.is_file():
            raise ValueError(f"stain_normalizer: reference file {path} not found; {hint}")
        try:
            ref = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"stain_normalizer: reference file {path} is not valid JSON ({exc})") from None
    if isinstance(ref, dict) and "method" not in ref:
        if name not in ref:
            raise ValueError(f"stain_normalizer: the reference has no {name!r} entry (keys: "
                             f"{', '.join(map(str, ref))}); {hint}")
        ref = ref[name]
    return _METHODS[name](ref)



def fit_slide_stain(normalizer: ReinhardNormalizer | MacenkoNormalizer, slide, tissue,
                    thumb: np.ndarray | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``normalizer``'s transform for one slide, fitted on the tissue pixels of a read at the mask's resolution.

    Args:
        slide: an open :class:`~monai_wsseg.wsi.slide.Slide`; tissue: its
            :class:`~monai_wsseg.wsi.tissue.TissueMask`; thumb: that read when the caller has it already.

    Training bags and whole-slide inference fit through here, so a slide is normalised the same way in both.
    Macenko takes the slide's glass colour (:func:`slide_glass`, the median of the read outside the tissue)
    off first: a second lab's tinted glass otherwise tilts the fitted stain plane.
    A slide the method cannot fit (one stain only, too little tissue at this resolution) keeps its own
    colours, with a warning naming it: one odd slide must not stop a cohort job.
    """
    if thumb is None:
        thumb = slide.thumbnail(tissue.mpp)
    h, w = thumb.shape[:2]
    # The read and the mask can differ by a pixel of rounding: look the mask up at pixel centres.
    rows = np.minimum(((np.arange(h) + 0.5) * tissue.shape[0] / h).astype(np.intp), tissue.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * tissue.shape[1] / w).astype(np.intp), tissue.shape[1] - 1)
    mask = tissue.mask[np.ix_(rows, cols)]
    pixels = thumb[mask]
    try:
        if isinstance(normalizer, MacenkoNormalizer):
            return normalizer.for_slide(pixels, glass=slide_glass(thumb, mask))
        return normalizer.for_slide(pixels)
    except ValueError as exc:
        logger.warning("%s: stain normalisation at %g µm/px skipped, colours kept as read: %s", slide.path,
                       tissue.mpp, str(exc).splitlines()[0])
        return _unchanged


def _unchanged(batch: torch.Tensor) -> torch.Tensor:
    """The stain transform of a slide left as read."""
    return batch
