"""Expert masks of a cohort: at which integer downsample a mask covers its slide.

A manifest's ``mask`` (:mod:`monai_wsseg.datasets.manifest`) is a one-channel image of the whole slide at
an integer downsample of level 0 that its size tells: :func:`mask_downsample` finds it, allowing the mask
to round either way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

__all__ = ["mask_downsample"]


def mask_downsample(
    mask_size: tuple[int, int],
    slide_size: tuple[int, int],
    *,
    mask_path: str | os.PathLike,
    slide_path: str | os.PathLike,
) -> int:
    """The integer downsample ``d`` at which a mask covers its whole slide.

    A mask of size ``(w, h)`` fits a level-0 slide of size ``(W, H)`` at ``d`` when
    ``|w - W/d| < 1`` and ``|h - H/d| < 1``: the mask may round either way. When several ``d``
    fit (tiny masks), the one nearest to the size ratio is returned.

    Args:
        mask_size: mask ``(width, height)`` in pixels.
        slide_size: slide level-0 ``(width, height)`` in pixels.
        mask_path, slide_path: only for the error message.

    Raises:
        ValueError: sizes that are not two positive integers, a mask larger than the slide, an
            aspect ratio that differs from the slide's, or no integer ``d``; the message starts
            with the mask path and names the slide and both sizes.
    """
    w, h = _size_pair(mask_size, mask_path, "mask size")
    sw, sh = _size_pair(slide_size, slide_path, "slide size")
    sizes = f"mask {w}x{h}, slide {slide_path} {sw}x{sh}"
    if w > sw or h > sh:
        raise ValueError(f"{mask_path}: mask is larger than its slide ({sizes})")

    def fits(d: int) -> bool:
        # |w - W/d| < 1  <=>  |w*d - W| < d, in exact integer arithmetic.
        return d >= 1 and abs(w * d - sw) < d and abs(h * d - sh) < d

    # Real d fitting both sides lie in (lo, hi); an empty interval means the shapes disagree.
    lo = max(sw / (w + 1), sh / (h + 1))
    hi = min(sw / (w - 1) if w > 1 else math.inf, sh / (h - 1) if h > 1 else math.inf)
    if lo >= hi:
        raise ValueError(
            f"{mask_path}: mask aspect ratio differs from its slide's ({sizes}; "
            f"W/w = {sw / w:.4g}, H/h = {sh / h:.4g})"
        )
    target = math.sqrt((sw * sh) / (w * h))
    candidates = {math.floor(target) + k for k in range(-2, 4)}
    candidates |= {math.floor(lo) + k for k in range(0, 3)}
    if math.isfinite(hi):
        candidates |= {math.ceil(hi) - k for k in range(0, 3)}
    valid = [d for d in candidates if fits(d)]
    if not valid:
        raise ValueError(
            f"{mask_path}: no integer downsample maps the mask onto its slide ({sizes}; "
            f"W/w = {sw / w:.4g}, H/h = {sh / h:.4g})"
        )
    return min(valid, key=lambda d: (abs(w - sw / d) + abs(h - sh / d), d))


def _size_pair(size: Sequence[int], path: str | os.PathLike, what: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in size)
        ok = all(int(v) == v for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or a < 1 or b < 1:
        raise ValueError(f"{path}: {what} {size!r} is not two positive integers (width, height)")
    return a, b
