"""Patch positions on a slide's tissue, and random draws from them.

A patch is ``patch_size`` pixels at ``mpp`` µm/px, so it covers ``patch_size · mpp / slide.mpp``
level-0 pixels on a side. :func:`tissue_grid` lays a regular grid of such patches over the slide and
keeps those whose tissue fraction (area-weighted, from the :class:`~monai_wsseg.wsi.tissue.TissueMask`)
is at least ``min_tissue``; the whole grid is scored at once through the mask's summed-area table,
so a 100,000² px slide with a one-pixel stride costs array operations, not a Python loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from monai_wsseg.wsi.tissue import TissueMask

__all__ = ["patch_footprint", "sample_positions", "tissue_grid"]

def _positive(name: str, value: Any, path: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {name} must be a positive number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{path}: {name} must be a positive number, got {value!r}")
    return number


def patch_footprint(slide_mpp: float, patch_size: int, mpp: float) -> float:
    """Side of a ``patch_size``-pixel patch at ``mpp`` µm/px, in level-0 pixels of a ``slide_mpp`` slide."""
    return patch_size * mpp / slide_mpp


def _axis_starts(length: int, footprint: float, stride: float) -> np.ndarray:
    """Level-0 starts ``floor(k · stride)`` of every patch with ``start + footprint ≤ length``."""
    count = math.floor((length - footprint) / stride + 1e-9) + 1
    starts = np.floor(np.arange(count, dtype=np.float64) * stride + 1e-9).astype(np.int64)
    # Flooring each start keeps start + footprint ≤ k·stride + footprint ≤ length.
    return starts


def tissue_grid(
    slide: Any,
    tissue: TissueMask,
    *,
    patch_size: int,
    mpp: float,
    min_tissue: float = 0.5,
    stride: int | None = None,
) -> np.ndarray:
    """Every patch position of a regular grid whose tissue fraction is at least ``min_tissue``.

    Args:
        slide: the slide (``path``, ``mpp`` = level-0 µm/px, ``dimensions`` = level-0 (width, height)).
        tissue: the slide's tissue mask (:func:`~monai_wsseg.wsi.tissue.compute_tissue_mask`).
        patch_size: patch side in pixels at ``mpp``.
        mpp: resolution the patches will be read at, µm/px.
        min_tissue: minimum tissue fraction of a patch, in [0, 1] (paper A keeps tiles with at most
            75 % background, i.e. ``min_tissue=0.25``).
        stride: grid step in pixels at ``mpp``; default ``patch_size`` (non-overlapping patches).

    Returns:
        (N, 2) int64 level-0 ``(x, y)`` top-left corners, row by row (y, then x, ascending). Grid
        point k along x sits at ``floor(k · stride · mpp / slide.mpp)``; every patch lies inside the
        slide: ``x + patch_size · mpp / slide.mpp ≤ width`` (and likewise for y).

    Raises:
        ValueError: (message starts with ``slide.path``) a non-positive size, resolution or stride,
            ``min_tissue`` outside [0, 1], a patch larger than the slide, a mask that does not cover
            the slide, or no position with enough tissue.
    """
    path = getattr(slide, "path", "<slide>")
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size <= 0:
        raise ValueError(f"{path}: patch_size must be a positive integer, got {patch_size!r}")
    if stride is None:
        stride = patch_size
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride <= 0:
        raise ValueError(f"{path}: stride must be a positive integer, got {stride!r}")
    mpp = _positive("mpp", mpp, path)
    slide_mpp = _positive("slide.mpp", slide.mpp, path)
    try:
        min_tissue = float(min_tissue)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: min_tissue must be a number in [0, 1], got {min_tissue!r}") from None
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"{path}: min_tissue must be in [0, 1], got {min_tissue!r}")
    if not isinstance(tissue, TissueMask):
        raise ValueError(f"{path}: tissue must be a TissueMask, got {type(tissue).__name__}")

    width, height = (int(v) for v in slide.dimensions)
    footprint = patch_footprint(slide_mpp, int(patch_size), mpp)
    step = patch_footprint(slide_mpp, int(stride), mpp)
    if footprint > width or footprint > height:
        raise ValueError(
            f"{path}: a {patch_size} px patch at {mpp} µm/px covers {footprint:.1f} level-0 px, more than "
            f"the slide's {width}x{height} px"
        )
    # A mask from another slide (or another crop) would place tissue in the wrong spot silently.
    mask_w, mask_h = tissue.level0_size
    tol_x, tol_y = 0.02 * width + tissue.scale[0], 0.02 * height + tissue.scale[1]
    if abs(mask_w - width) > tol_x or abs(mask_h - height) > tol_y:
        raise ValueError(
            f"{path}: the tissue mask covers {mask_w:.0f}x{mask_h:.0f} level-0 px, the slide is "
            f"{width}x{height} px; was it computed on this slide?"
        )

    xs = _axis_starts(width, footprint, step)
    ys = _axis_starts(height, footprint, step)
    found: list[np.ndarray] = []
    for r0, fraction in tissue.iter_grid_fraction(xs, ys, footprint, footprint):
        # Slack for the floating-point sums: a patch exactly at the threshold must pass.
        rr, cc = np.nonzero(fraction >= min_tissue - 1e-9)
        found.append(np.stack([xs[cc], ys[r0 + rr]], axis=1))
    positions = np.concatenate(found).astype(np.int64, copy=False)
    if len(positions) == 0:
        raise ValueError(
            f"{path}: no {patch_size} px patch at {mpp} µm/px has a tissue fraction ≥ {min_tissue} "
            f"({len(xs) * len(ys)} grid positions, slide tissue fraction {tissue.fraction:.3f})"
        )
    return positions


def sample_positions(positions: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` patch positions, e.g. one MIL bag.

    Without replacement when there are at least ``n`` positions. With fewer, every position is taken
    once and the remaining ``n - N`` are drawn with replacement, so a small slide still yields a
    full bag without leaving any of its tissue out; the result is shuffled either way.

    Args:
        positions: (N, 2) level-0 ``(x, y)``, N ≥ 1.
        n: how many to draw, ≥ 1.
        rng: the random generator (seeded by the caller).

    Returns:
        (n, 2) array with the dtype of ``positions``.

    Raises:
        ValueError: ``positions`` is not a non-empty (N, 2) array, ``n`` is not a positive integer,
            or ``rng`` is not a ``numpy.random.Generator``.
    """
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must have shape (N, 2), got {positions.shape}")
    if len(positions) == 0:
        raise ValueError("positions is empty: nothing to sample from")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    count = len(positions)
    if n <= count:
        index = rng.choice(count, size=int(n), replace=False)
    else:
        extra = rng.choice(count, size=int(n) - count, replace=True)
        index = rng.permutation(np.concatenate([np.arange(count), extra]))
    return positions[index]
