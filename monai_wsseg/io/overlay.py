"""A slide map blended over a thumbnail of its slide, with a legend: a PNG for a quick look at a result."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from monai_wsseg.io import checks
from monai_wsseg.io.palettes import Colour
from monai_wsseg.utils.atomic import write_atomically

if TYPE_CHECKING:  # importing the engine pulls in torch and MONAI; the writers need neither
    from monai_wsseg.inference.engine import SlideMap
    from monai_wsseg.wsi.slide import Slide

__all__ = ["write_overlay_png"]

# Anchors of the probability colour map (blue → cyan → green → yellow → red), low to high.
_HEAT_ANCHORS = np.array(
    [(40, 40, 190), (30, 160, 235), (90, 200, 90), (250, 210, 40), (215, 25, 25)], dtype=np.float64
)


def _resize_plane(plane: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float],
                  resample: Image.Resampling) -> np.ndarray:
    """Resample the ``box`` (cell units) of a 2-D map to ``size`` = (width, height) pixels."""
    img = Image.fromarray(np.ascontiguousarray(plane))
    return np.asarray(img.resize(size, resample, box=box))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels, so the legend needs no font file on the system."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _heat_lut() -> np.ndarray:
    """``(256, 3)`` uint8 colours of probabilities 0/255 … 255/255."""
    x = np.linspace(0, 1, len(_HEAT_ANCHORS))
    t = np.linspace(0, 1, 256)
    lut = np.stack([np.interp(t, x, _HEAT_ANCHORS[:, k]) for k in range(3)], axis=1)
    return np.rint(lut).astype(np.uint8)


def _legend(
    height: int,
    font_size: int,
    *,
    names: list[str],
    colors: list[Colour],
    heat: bool,
    note: str,
) -> Image.Image:
    """The legend panel: swatches and names, or a 0–1 colour bar titled with the class name."""
    font = _font(font_size)
    small = _font(max(11, round(font_size * 0.85)))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, line = font_size, round(font_size * 1.5)
    sw = font_size  # swatch / bar width
    if heat:
        bar_h = int(min(max(height - 4 * pad - 3 * line, 6 * line), 20 * line))
        texts = [names[0], "probability", "0.0", "0.5", "1.0"]
    else:
        bar_h = 0
        texts = list(names)
    text_w = max(scratch.textlength(t, font=font) for t in texts)
    note_w = scratch.textlength(note, font=small)
    width = int(max(pad + sw + pad // 2 + text_w, note_w) + 2 * pad)
    rows = 2 if heat else len(names)
    panel_h = int(pad + rows * line + bar_h + (pad if heat else 0) + line + pad)
    panel = Image.new("RGB", (width, max(height, panel_h)), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    y = pad
    if heat:
        draw.text((pad, y), names[0], fill=(0, 0, 0), font=font)
        draw.text((pad, y + line), "probability", fill=(60, 60, 60), font=small)
        y += 2 * line + pad // 2
        lut = _heat_lut()
        # 1.0 at the top, like most colour bars
        ramp = lut[np.rint(np.linspace(255, 0, bar_h)).astype(int)]
        bar = np.repeat(ramp[:, None, :], sw, axis=1)
        panel.paste(Image.fromarray(bar), (pad, y))
        draw.rectangle((pad, y, pad + sw - 1, y + bar_h - 1), outline=(0, 0, 0))
        for value, label in ((1.0, "1.0"), (0.5, "0.5"), (0.0, "0.0")):
            ty = y + round((1 - value) * (bar_h - 1))
            draw.line((pad + sw, ty, pad + sw + pad // 3, ty), fill=(0, 0, 0))
            draw.text((pad + sw + pad // 2, ty), label, fill=(0, 0, 0), font=font, anchor="lm")
        y += bar_h + pad
    else:
        for name, color in zip(names, colors, strict=True):
            draw.rectangle((pad, y, pad + sw - 1, y + sw - 1), fill=color, outline=(0, 0, 0))
            draw.text((pad + sw + pad // 2, y + sw // 2), name, fill=(0, 0, 0), font=font, anchor="lm")
            y += line
    draw.text((pad, y + line // 4), note, fill=(110, 110, 110), font=small)
    return panel


def _open(slide: Slide | str | os.PathLike | None, smap: SlideMap) -> Slide:
    """``slide`` as an open slide: an object with the slide's methods as is, a path opened, ``None`` the map's."""
    if slide is None:
        slide = smap.slide
    if hasattr(slide, "thumbnail") and hasattr(slide, "dimensions") and hasattr(slide, "mpp"):
        return slide  # type: ignore[return-value]  # duck-typed: anything with a slide's methods serves
    from monai_wsseg.wsi.slide import open_slide

    return open_slide(slide)


def _thumbnail(src: Slide, mpp: float, block: int = 512) -> np.ndarray:
    """The slide at ``mpp`` microns per pixel, ``(h, w, 3)`` uint8.

    When the whole read fails (a corrupted tile), the picture is read again in ``block``-pixel squares and
    the squares that still cannot be read are painted mid grey, with a warning: the map is worth drawing
    over the rest of the slide, and the grey shows where the slide itself is damaged.
    """
    from monai_wsseg.wsi.slide import SlideReadError

    try:
        return np.asarray(src.thumbnail(mpp))[..., :3]
    except SlideReadError as exc:
        if not hasattr(src, "read_region"):
            raise
        first = exc
    w, h = src.size_at(mpp)
    scale = mpp / float(src.mpp)  # level-0 pixels per thumbnail pixel
    out = np.full((h, w, 3), 128, dtype=np.uint8)
    lost = 0
    for y in range(0, h, block):
        for x in range(0, w, block):
            bw, bh = min(block, w - x), min(block, h - y)
            try:
                region = src.read_region((round(x * scale), round(y * scale)), (bw, bh), mpp)
                out[y : y + bh, x : x + bw] = np.asarray(region)[..., :3]
            except SlideReadError:
                lost += 1
    warnings.warn(f"{first}; {lost} thumbnail block(s) of {block} px could not be read and are grey in the overlay",
                  stacklevel=3)
    return out


def _check_fits(where: Any, probs: np.ndarray, d: int, dimensions: tuple[int, int]) -> None:
    """A ``(C, h, w)`` map at downsample ``d`` must have ``ceil`` of the level-0 ``(width, height)`` / ``d`` cells."""
    w0, h0 = (int(v) for v in dimensions)
    expected = (math.ceil(h0 / d), math.ceil(w0 / d))
    if tuple(probs.shape[1:]) != expected:
        raise ValueError(
            f"{where}: the map is {probs.shape[2]}x{probs.shape[1]} cells but a {w0}x{h0} px slide at downsample "
            f"{d} needs {expected[1]}x{expected[0]}; is it the map of this slide?"
        )


def write_overlay_png(
    path: str | os.PathLike,
    smap: SlideMap,
    slide: Slide | str | os.PathLike | None = None,
    *,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    max_size: int = 2048,
    alpha: float = 0.45,
    threshold: float | None = None,
) -> Path:
    """Write a PNG of the map blended over a thumbnail of its slide, with a legend in a right margin.

    The thumbnail is read at the mpp that makes its longest side ``max_size`` pixels (the slide's own
    resolution when it is smaller). What is drawn:

    * one channel, ``threshold=None``: a heat map of the probability (bilinear, blue 0 → red 1) on every
      computed cell, and a 0–1 colour bar titled with the class name;
    * one channel with a threshold: the cells with ``p >= threshold`` in the class colour;
    * several channels: the argmax class of every computed cell in its colour (nearest), only where its
      probability reaches ``threshold`` when one is given; swatches and names in the legend.

    No-data cells (and cells below the threshold) show the thumbnail unchanged. Colour = ``(1 − alpha) ×
    thumbnail + alpha × map colour``.

    Args:
        path: output ``.png`` file; its folder must exist.
        smap: the map; its shape must match the slide at ``smap.downsample``.
        slide: the slide (a :class:`~monai_wsseg.wsi.slide.Slide` or a path); ``None`` opens ``smap.slide``.
        class_names: one name per channel.
        colors: one ``(r, g, b)`` per channel (0–255); default :func:`~monai_wsseg.io.palettes.default_colors`.
        max_size: longest side of the thumbnail in pixels (the legend margin is added to the right).
        alpha: opacity of the map colours, in [0, 1].
        threshold: see above.

    Returns:
        ``path``; the image is ``(max(th, legend height), tw + legend width)`` RGB.
    """
    path = checks.output_path(path, (".png",))
    probs = checks.check_map(path, smap)
    c = probs.shape[0]
    names = checks.check_names(path, class_names, c)
    palette = checks.check_colors(path, colors, c)
    thr = checks.check_threshold(path, threshold)
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 16:
        raise ValueError(f"{path}: max_size must be an integer of at least 16 pixels, got {max_size!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 <= alpha <= 1:
        raise ValueError(f"{path}: alpha must be a number in [0, 1], got {alpha!r}")
    heat = c == 1 and thr is None
    if heat:
        checks.check_range(path, probs)
    src = _open(slide, smap)
    d = int(smap.downsample)
    _check_fits(path, probs, d, src.dimensions)
    w0, h0 = (int(v) for v in src.dimensions)
    thumb_mpp = float(src.mpp) * max(1.0, max(w0, h0) / max_size)
    thumb = _thumbnail(src, thumb_mpp)
    th, tw = thumb.shape[:2]
    box = (0.0, 0.0, w0 / d, h0 / d)  # the slide's extent in cells; the last row/column may be partial

    if heat:
        plane = probs[0]
        computed = np.isfinite(plane)
        values = np.where(computed, np.clip(plane, 0, 1), 0).astype(np.float32)
        # Normalised interpolation: no-data cells neither darken their neighbours nor get coloured.
        num = _resize_plane(values, (tw, th), box, Image.Resampling.BILINEAR)
        den = _resize_plane(computed.astype(np.float32), (tw, th), box, Image.Resampling.BILINEAR)
        paint = den >= 0.5
        prob = np.clip(num / np.maximum(den, 1e-6), 0, 1)
        layer = _heat_lut()[np.rint(prob * 255).astype(np.intp)]
    else:
        cls = checks.classify(probs, thr)
        index = np.where(cls >= 0, cls + 1, 0).astype(np.uint8 if c < 255 else np.uint16)
        if index.dtype == np.uint16:
            index = index.astype(np.int32)  # PIL resizes 32-bit integer images, not 16-bit ones
        index = _resize_plane(index, (tw, th), box, Image.Resampling.NEAREST)
        paint = index > 0
        lut = np.array([(0, 0, 0), *palette], dtype=np.uint8)
        layer = lut[index]
    base = thumb.astype(np.float32)
    weight = np.where(paint, np.float32(alpha), np.float32(0))[..., None]
    blended = np.rint(base + weight * (layer.astype(np.float32) - base)).astype(np.uint8)

    font_size = int(np.clip(round(max(tw, th) / 90), 12, 28))
    if heat:
        note = "uncoloured: no data"
    elif thr is not None:
        note = f"uncoloured: p < {thr:g} or no data"
    else:
        note = "uncoloured: no data"
    panel = _legend(th, font_size, names=names, colors=palette, heat=heat, note=note)
    canvas = Image.new("RGB", (tw + panel.width, max(th, panel.height)), (255, 255, 255))
    canvas.paste(Image.fromarray(blended), (0, 0))
    canvas.paste(panel, (tw, 0))

    with checks.output_errors(path):
        return write_atomically(path, lambda tmp: canvas.save(tmp, format="PNG", compress_level=4))
