"""Write slide maps in the formats pathologists' and researchers' tools read.

A :class:`~monai_wsseg.inference.engine.SlideMap` holds ``(C, h, w)`` probabilities at an integer
``downsample`` of the slide (map cell ``(i, j)`` covers level-0 pixels ``[j·d, (j+1)·d) × [i·d, (i+1)·d)``),
NaN where nothing was computed. The writers turn it into:

* :func:`write_map_tiff` — a pyramidal tiled TIFF (uint8, zlib) whose resolution tag is the map's microns
  per cell, so OpenSlide, tiffslide, cuCIM and QuPath place it over the slide;
* :func:`write_overlay_png` — the map blended over a slide thumbnail, with a legend, for a quick look;
* :func:`map_polygons` / :func:`write_geojson` — the regions of every class as polygons with holes, in
  level-0 pixels, as a GeoJSON FeatureCollection that QuPath imports as classified annotations;
* :func:`write_nifti` — the raw float maps with their spacing in millimetres, for medical-imaging tools.

Every writer validates its inputs (``ValueError`` naming the output and the problem), writes to a hidden
temporary file in the output folder and renames it over the final name only when complete, so a crash
or an error never leaves a partial file under the final name.

Polygon tracing follows cell edges exactly, so the polygons rasterise back to the mask cell for cell:
regions are 4-connected components; at a vertex where two cells of one region touch diagonally the
boundary keeps them joined, so a hole that touches its region's outline at one corner stays a hole
(OGC-valid: a hole may touch the shell at a point) and two different regions meeting at a corner become
two polygons (a shell may not touch itself).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import math
import os
import secrets
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

if TYPE_CHECKING:  # importing the engine pulls in torch and MONAI; the writers need neither
    from monai_wsseg.inference.engine import SlideMap
    from monai_wsseg.wsi.slide import Slide

__all__ = [
    "MapPolygon",
    "NO_DATA_LABEL",
    "default_colors",
    "map_polygons",
    "write_geojson",
    "write_map_tiff",
    "write_nifti",
    "write_overlay_png",
]

#: Value of no-data cells in a label-map TIFF (class indices are 0..C-1, so at most 255 classes).
NO_DATA_LABEL = 255

# Rows of the map converted at a time: bounds the float64/int temporaries for very large maps.
_SLAB_ROWS = 1024
# Distinct colours for the first classes (a common "20 distinct colours" palette); more are generated.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 225, 25), (220, 190, 255),
)
# Anchors of the probability colour map (blue → cyan → green → yellow → red), low to high.
_HEAT_ANCHORS = np.array(
    [(40, 40, 190), (30, 160, 235), (90, 200, 90), (250, 210, 40), (215, 25, 25)], dtype=np.float64
)
_OBJECT_TYPES = ("annotation", "detection")
# Directions of boundary edges, clockwise on screen (y down): turning right is +1, left is +3 (mod 4).
_E, _S, _W, _N = 0, 1, 2, 3


class MapPolygon(NamedTuple):
    """One region of one class.

    Attributes:
        class_name: the class the region belongs to.
        rings: ``[outer, *holes]``; each an ``(N, 2)`` int64 array of level-0 ``(x, y)`` pixel vertices,
            closed (last vertex = first). With y pointing down, the outer ring has a positive shoelace
            area (counter-clockwise in the numeric x/y sense, as RFC 7946 asks) and holes a negative one.
    """

    class_name: str
    rings: list[np.ndarray]


# ---------------------------------------------------------------------------------------------------------
# validation and atomic output
# ---------------------------------------------------------------------------------------------------------
def _output_path(path: str | os.PathLike, suffixes: Sequence[str] = ()) -> Path:
    """Check that ``path`` can be written (folder exists, is a folder, is writable; name has a suffix)."""
    try:
        path = Path(path)
    except TypeError:
        raise ValueError(f"output path must be a str or os.PathLike, got {type(path).__name__}") from None
    if suffixes and not any(path.name.lower().endswith(s) for s in suffixes):
        raise ValueError(f"{path}: the file name must end with {' or '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name")
    folder = path.parent
    if not folder.exists():
        raise ValueError(f"{path}: output folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{path}: output folder {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: output folder {folder} is not writable")
    return path


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> Path:
    """Run ``write(tmp)`` on a hidden temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps ``path``'s full name at its end, so writers that pick a format from the
    suffix (nibabel's ``.nii.gz``) still do. On any failure the temporary file is removed.
    """
    tmp = path.with_name(f".tmp{os.getpid()}-{secrets.token_hex(3)}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ValueError(f"{path}: output folder {path.parent} is not writable ({exc.strerror})") from exc
        raise OSError(exc.errno, f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects that form no cycles.

    Millions of coordinate lists or polygon tuples make it rescan the growing heap over and over, which
    tripled the time of polygon and GeoJSON building on large maps.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_map(where: Any, smap: SlideMap) -> np.ndarray:
    """The ``(C, h, w)`` floating probabilities of ``smap`` after checking its fields."""
    probs = getattr(smap, "probabilities", None)
    if not isinstance(probs, np.ndarray) or probs.ndim != 3 or min(probs.shape) < 1:
        shape = getattr(probs, "shape", type(probs).__name__)
        raise ValueError(f"{where}: SlideMap.probabilities must be a non-empty (C, h, w) array, got {shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"{where}: SlideMap.probabilities must be floating point, got {probs.dtype}")
    d = getattr(smap, "downsample", None)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"{where}: SlideMap.downsample must be a positive integer, got {d!r}")
    mpp = getattr(smap, "mpp", None)
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float, np.floating)) or not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"{where}: SlideMap.mpp must be a positive number of microns per cell, got {mpp!r}")
    return probs


def _check_range(where: Any, probs: np.ndarray) -> None:
    """Probabilities must lie in [0, 1] (NaN allowed): logits written as probabilities would be clipped silently."""
    finite = probs[np.isfinite(probs)] if probs.size <= 2**26 else None
    if finite is None:  # huge maps: slab by slab, without a full boolean copy
        lo, hi = math.inf, -math.inf
        for r0 in range(0, probs.shape[1], _SLAB_ROWS):
            slab = probs[:, r0 : r0 + _SLAB_ROWS]
            if np.isfinite(slab).any():
                lo, hi = min(lo, float(np.nanmin(slab))), max(hi, float(np.nanmax(slab)))
    elif finite.size:
        lo, hi = float(finite.min()), float(finite.max())
    else:
        return
    if lo < -1e-4 or hi > 1 + 1e-4 or np.isinf(probs).any():
        raise ValueError(
            f"{where}: probabilities must lie in [0, 1] (NaN for no data), found values in [{lo:.4g}, {hi:.4g}]; "
            "was the inferer's activation 'none'?"
        )


def _check_threshold(where: Any, threshold: float | None) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) or not 0 <= threshold <= 1:
        raise ValueError(f"{where}: threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def _check_names(where: Any, class_names: Sequence[str], channels: int) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"{where}: class_names must be a sequence of strings, got {class_names!r}")
    names = list(class_names)
    if len(names) != channels:
        raise ValueError(f"{where}: {len(names)} class names given for a map with {channels} channel(s)")
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{where}: class names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: class names must be unique, got {names!r}")
    return names


def default_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours (0–255): a fixed palette first, then evenly spread hues."""
    colors = list(_PALETTE[:n])
    golden = 0.618033988749895
    for k in range(len(colors), n):
        hue = (k * golden) % 1.0
        rgb = Image.new("HSV", (1, 1), (int(hue * 255), 200, 230)).convert("RGB").getpixel((0, 0))
        colors.append(tuple(int(v) for v in rgb))
    return colors


def _check_colors(where: Any, colors: Sequence[Sequence[int]] | None, n: int) -> list[tuple[int, int, int]]:
    if colors is None:
        return default_colors(n)
    colors = list(colors)
    if len(colors) != n:
        raise ValueError(f"{where}: {len(colors)} colours given for {n} class(es)")
    out = []
    for c in colors:
        try:
            rgb = tuple(int(v) for v in c)
            ok = len(rgb) == 3 and all(0 <= v <= 255 and v == float(x) for v, x in zip(rgb, c))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{where}: colours must be (r, g, b) integers in 0..255, got {c!r}")
        out.append(rgb)
    return out


def _classify(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """``(h, w)`` int16 class index per cell: ``-2`` no data, ``-1`` below the threshold, else the class.

    One channel: class 0 where ``p >= threshold`` (0.5 when ``None``). Several channels: the argmax class;
    with a threshold, only where that class's probability reaches it. A cell with a NaN in any channel is
    no data. Computed slab by slab so temporaries stay small for huge maps.
    """
    c, h, w = probs.shape
    out = np.empty((h, w), dtype=np.int16)
    for r0 in range(0, h, _SLAB_ROWS):
        slab = probs[:, r0 : r0 + _SLAB_ROWS]
        nodata = np.isnan(slab).any(axis=0)
        if c == 1:
            t = 0.5 if threshold is None else threshold
            cls = np.where(slab[0] >= t, 0, -1).astype(np.int16)
        else:
            filled = np.where(np.isnan(slab), -np.inf, slab)
            cls = np.argmax(filled, axis=0).astype(np.int16)
            if threshold is not None:
                cls[np.max(filled, axis=0) < threshold] = -1
        cls[nodata] = -2
        out[r0 : r0 + _SLAB_ROWS] = cls
    return out


# ---------------------------------------------------------------------------------------------------------
# pyramidal TIFF
# ---------------------------------------------------------------------------------------------------------
def write_map_tiff(
    path: str | os.PathLike,
    smap: SlideMap,
    *,
    channel: int | None = None,
    label_map: bool = False,
    threshold: float = 0.5,
    tile_size: int = 256,
    slide_mpp: float | None = None,
) -> Path:
    """Write a map as a pyramidal tiled TIFF that overlays its slide in OpenSlide/tiffslide/QuPath.

    Level 0 is ``(h, w)`` uint8, one pixel per map cell; its resolution tag is the slide's mpp × downsample
    microns per pixel, so viewers scale it onto the slide (both share the top-left corner; the map's last
    row/column may reach up to one cell past the slide's edge). Compression is zlib (lossless);
    reduced levels are 2× area averages (probabilities) or 2× nearest samples (labels).

    Args:
        path: output ``.tif``/``.tiff`` file; its folder must exist.
        smap: the map (``probabilities`` ``(C, h, w)`` in [0, 1], NaN = no data).
        channel: channel to write as a probability image; required when ``C > 1`` (unless ``label_map``).
        label_map: write class indices instead: the argmax over channels (``0..C-1``) when ``C > 1``;
            for one channel ``1`` where ``p >= threshold`` and ``0`` elsewhere. No-data cells are
            :data:`NO_DATA_LABEL` (255).
        threshold: the cut of a single-channel label map.
        tile_size: TIFF tile edge in pixels (multiple of 16).
        slide_mpp: level-0 microns per pixel of the slide; the tag is then ``slide_mpp × smap.downsample``.
            ``None`` uses ``smap.mpp``, which the inferer sets to exactly that.

    Returns:
        ``path``. Probability mode stores ``round(p × 255)``, no data as 0.

    Raises:
        ValueError: a bad map/argument, probabilities outside [0, 1], or an unwritable folder.
    """
    from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff

    path = _output_path(path, (".tif", ".tiff"))
    probs = _check_map(path, smap)
    c, h, w = probs.shape
    if slide_mpp is None:
        map_mpp = float(smap.mpp)
    elif isinstance(slide_mpp, (int, float, np.floating)) and math.isfinite(slide_mpp) and slide_mpp > 0:
        map_mpp = float(slide_mpp) * int(smap.downsample)
    else:
        raise ValueError(f"{path}: slide_mpp must be a positive number of microns per pixel, got {slide_mpp!r}")
    if label_map:
        if channel is not None:
            raise ValueError(f"{path}: channel and label_map=True exclude each other")
        if c > NO_DATA_LABEL:
            raise ValueError(f"{path}: a label map holds at most {NO_DATA_LABEL} classes, the map has {c}")
        thr = _check_threshold(path, threshold)
        cls = _classify(probs, thr if c == 1 else None)
        image = np.empty((h, w), dtype=np.uint8)
        for r0 in range(0, h, _SLAB_ROWS):
            slab = cls[r0 : r0 + _SLAB_ROWS]
            # one channel: class 0 ("positive") → 1, below threshold → 0; several: the class index itself
            labels = slab + 1 if c == 1 else slab
            image[r0 : r0 + _SLAB_ROWS] = np.where(slab == -2, NO_DATA_LABEL, labels).astype(np.uint8)
        resample = "nearest"
    else:
        if channel is None:
            if c != 1:
                raise ValueError(f"{path}: the map has {c} channels; pass channel=<index> or label_map=True")
            channel = 0
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < c:
            raise ValueError(f"{path}: channel must be an integer in 0..{c - 1}, got {channel!r}")
        plane = probs[channel]
        _check_range(path, plane[None])
        image = np.empty((h, w), dtype=np.uint8)
        for r0 in range(0, h, _SLAB_ROWS):
            # float64 so the stored value is exactly round(p × 255) of the float32 probability
            slab = np.nan_to_num(plane[r0 : r0 + _SLAB_ROWS].astype(np.float64), nan=0.0)
            image[r0 : r0 + _SLAB_ROWS] = np.rint(np.clip(slab, 0.0, 1.0) * 255.0)
        resample = "area"

    def write(tmp: Path) -> None:
        write_pyramidal_tiff(
            tmp, image, map_mpp, tile_size=tile_size, compression="zlib", photometric="minisblack",
            resample=resample,
        )

    return _write_atomically(path, write)


# ---------------------------------------------------------------------------------------------------------
# PNG overlay
# ---------------------------------------------------------------------------------------------------------
def _resize_plane(plane: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float],
                  resample: Image.Resampling) -> np.ndarray:
    """Resample the ``box`` (cell units) of a 2-D map to ``size`` = (width, height) pixels."""
    img = Image.fromarray(np.ascontiguousarray(plane))
    return np.asarray(img.resize(size, resample, box=box))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
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
    colors: list[tuple[int, int, int]],
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
        for name, color in zip(names, colors):
            draw.rectangle((pad, y, pad + sw - 1, y + sw - 1), fill=color, outline=(0, 0, 0))
            draw.text((pad + sw + pad // 2, y + sw // 2), name, fill=(0, 0, 0), font=font, anchor="lm")
            y += line
    draw.text((pad, y + line // 4), note, fill=(110, 110, 110), font=small)
    return panel


def _open(slide: Slide | str | os.PathLike | None, smap: SlideMap) -> Slide:
    if slide is None:
        slide = smap.slide
    if hasattr(slide, "thumbnail") and hasattr(slide, "dimensions") and hasattr(slide, "mpp"):
        return slide  # type: ignore[return-value]
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
        colors: one ``(r, g, b)`` per channel (0–255); default :func:`default_colors`.
        max_size: longest side of the thumbnail in pixels (the legend margin is added to the right).
        alpha: opacity of the map colours, in [0, 1].
        threshold: see above.

    Returns:
        ``path``; the image is ``(max(th, legend height), tw + legend width)`` RGB.
    """
    path = _output_path(path, (".png",))
    probs = _check_map(path, smap)
    c = probs.shape[0]
    names = _check_names(path, class_names, c)
    palette = _check_colors(path, colors, c)
    thr = _check_threshold(path, threshold)
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 16:
        raise ValueError(f"{path}: max_size must be an integer of at least 16 pixels, got {max_size!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 <= alpha <= 1:
        raise ValueError(f"{path}: alpha must be a number in [0, 1], got {alpha!r}")
    heat = c == 1 and thr is None
    if heat:
        _check_range(path, probs)
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
        cls = _classify(probs, thr)
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

    return _write_atomically(path, lambda tmp: canvas.save(tmp, format="PNG", compress_level=4))


# ---------------------------------------------------------------------------------------------------------
# polygons and GeoJSON
# ---------------------------------------------------------------------------------------------------------
class _Rings(NamedTuple):
    """Traced rings, flat: ring ``r`` is ``vertices[starts[r]:starts[r + 1]]`` (open, corners only)."""

    vertices: np.ndarray  # (V, 2) int64 (x, y) cell-corner coordinates
    starts: np.ndarray  # (R + 1,) int64 offsets
    region: np.ndarray  # (R,) label of the region each ring bounds
    area2: np.ndarray  # (R,) int64 twice the signed (shoelace) area: > 0 outer ring, < 0 hole


def _trace_rings(labels: np.ndarray) -> _Rings:
    """Trace the cell-edge boundaries of labelled regions.

    Args:
        labels: ``(h, w)`` integer array, 0 = background, ``k > 0`` = region ``k`` (4-connected).

    Returns:
        The rings of all regions (see :class:`_Rings`). Corner ``(x, y)`` is the top-left of cell ``(y, x)``;
        rings hold corner vertices only (no collinear ones) and do not repeat their first vertex. The region
        lies on the right of the direction of travel (y down), which makes outer rings' shoelace area
        positive and holes' negative.
    """
    h, w = labels.shape
    lab = np.pad(labels, 1)
    fg = lab > 0
    # Directed unit edges with the region on their right. Horizontal edges are listed row by row and
    # vertical ones column by column, so a straight run of edges has consecutive ids (used below).
    above, below = fg[0 : h + 1, 1 : w + 1], fg[1 : h + 2, 1 : w + 1]  # cells on either side of line y = Y
    left, right = fg[1 : h + 1, 0 : w + 1], fg[1 : h + 1, 1 : w + 2]  # cells on either side of line x = X
    e_y, e_x = np.nonzero(below & ~above)  # east, from (x, Y): region below
    s_x, s_y = np.nonzero((left & ~right).T)  # south, from (X, y): region on the west side
    w_y, w_x = np.nonzero(above & ~below)  # west, from (x + 1, Y): region above
    n_x, n_y = np.nonzero((right & ~left).T)  # north, from (X, y + 1): region on the east side
    counts = [len(e_x), len(s_x), len(w_x), len(n_x)]
    if not sum(counts):
        empty = np.zeros(0, dtype=np.int64)
        return _Rings(np.zeros((0, 2), dtype=np.int64), np.zeros(1, dtype=np.int64), empty, empty)
    d = np.repeat(np.arange(4, dtype=np.int8), counts)
    # start and end corners of every edge
    x0 = np.concatenate([e_x, s_x, w_x + 1, n_x]).astype(np.int64)
    y0 = np.concatenate([e_y, s_y, w_y, n_y + 1]).astype(np.int64)
    x1 = np.concatenate([e_x + 1, s_x, w_x, n_x]).astype(np.int64)
    y1 = np.concatenate([e_y, s_y + 1, w_y, n_y]).astype(np.int64)
    region = np.concatenate([lab[e_y + 1, e_x + 1], lab[s_y + 1, s_x], lab[w_y, w_x + 1], lab[n_y + 1, n_x + 1]])
    del e_x, e_y, s_x, s_y, w_x, w_y, n_x, n_y
    span = (h + 2) * (w + 2)

    def key(direction: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        horizontal = (direction == _E) | (direction == _W)
        return direction.astype(np.int64) * span + np.where(horizontal, y * (w + 1) + x, x * (h + 1) + y)

    keys = key(d, x0, y0)  # sorted: the edge lists above are in this order
    del x0, y0

    # The 2x2 cells around each edge's end corner decide which edge follows.
    tl, tr = fg[y1, x1], fg[y1, x1 + 1]
    bl, br = fg[y1 + 1, x1], fg[y1 + 1, x1 + 1]
    leaving = np.stack([br & ~tr, bl & ~br, tl & ~bl, tr & ~tl])  # an edge leaves towards E, S, W, N
    idx = np.arange(len(d))
    turn_r, turn_l = (d + 1) % 4, (d + 3) % 4
    has_r, has_s, has_l = leaving[turn_r, idx], leaving[d, idx], leaving[turn_l, idx]
    # Two cells touching only at this corner: keep them joined (turn left) when they are one region, so a
    # region's outline never touches itself; separate them (turn right) when they are two regions.
    pinch = has_r & has_l
    same = np.where(tl, lab[y1, x1] == lab[y1 + 1, x1 + 1], lab[y1, x1 + 1] == lab[y1 + 1, x1])
    nxt_d = np.where(pinch, np.where(same, turn_l, turn_r), np.where(has_r, turn_r, np.where(has_s, d, turn_l)))
    next_key = key(nxt_d, x1, y1)
    succ = np.searchsorted(keys, next_key)
    if succ.max() >= len(keys) or not np.array_equal(keys[succ], next_key):
        raise RuntimeError("boundary tracing lost an edge; please report this map")

    # Keep only edges that end at a corner; link each to the next such edge along its ring. The run that
    # starts at succ[c] has consecutive ids, ascending for E/S and descending for W/N, and ends at the
    # first corner edge met in that order.
    corner = np.flatnonzero(nxt_d != d)
    start = succ[corner]
    forward = (d[start] == _E) | (d[start] == _S)
    pos = np.where(forward, np.searchsorted(corner, start, "left"), np.searchsorted(corner, start, "right") - 1)

    order, offsets = _cycles(pos)
    ring_edges = corner[order]
    vertices = np.stack([x1[ring_edges], y1[ring_edges]], axis=1)
    # shoelace per ring: each vertex with the next one of its own ring
    following = np.arange(1, len(order) + 1)
    following[offsets[1:] - 1] = offsets[:-1]
    x, y = vertices[:, 0], vertices[:, 1]
    area2 = np.add.reduceat(x * y[following] - x[following] * y, offsets[:-1])
    return _Rings(vertices, offsets, region[ring_edges[offsets[:-1]]].astype(np.int64), area2)


def _cycles(nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a permutation into its cycles, vectorised (pointer jumping instead of a Python walk).

    Args:
        nxt: ``(n,)`` int permutation; ``i`` is followed by ``nxt[i]``.

    Returns:
        ``order`` ``(n,)``: the cycles one after another, each starting at its smallest index and following
        ``nxt``; ``starts`` ``(R + 1,)``: cycle ``r`` is ``order[starts[r]:starts[r + 1]]``.
    """
    n = len(nxt)
    nxt = nxt.astype(np.int64, copy=False)
    # head of every cycle = its smallest index: after k rounds, low[i] is the minimum of the 2**k
    # elements from i on; a round that changes nothing means every window already holds the head.
    low, jump = np.arange(n), nxt
    while True:
        lower = np.minimum(low, low[jump])
        if np.array_equal(lower, low):
            break
        low, jump = lower, jump[jump]
    head = low
    # steps from each element forward to its head (list ranking, the head being the list's end)
    is_head = head == np.arange(n)
    steps = (~is_head).astype(np.int64)
    jump = np.where(is_head, np.arange(n), nxt)
    while True:
        ahead = jump[jump]
        steps = steps + steps[jump]
        if np.array_equal(ahead, jump):
            break
        jump = ahead
    length = np.bincount(head, minlength=n)[head]
    position = (length - steps) % length  # the head is 0, its successor 1, ...
    order = np.lexsort((position, head))
    starts = np.flatnonzero(position[order] == 0)
    return order, np.r_[starts, n].astype(np.int64)


def _slide_dimensions(smap: SlideMap, given: tuple[int, int] | None) -> tuple[int, int] | None:
    """Level-0 (width, height) to clip polygons to: ``given``, else read from ``smap.slide`` when it opens."""
    if given is not None:
        w0, h0 = (int(v) for v in given)
        if w0 < 1 or h0 < 1:
            raise ValueError(f"slide_dimensions must be positive (width, height), got {given!r}")
        return w0, h0
    slide_path = getattr(smap, "slide", None)
    if not slide_path or not Path(slide_path).exists():
        return None
    try:
        from monai_wsseg.wsi.slide import open_slide

        with open_slide(slide_path) as slide:
            return tuple(int(v) for v in slide.dimensions)  # type: ignore[return-value]
    except Exception:
        return None  # an unreadable slide only costs the clipping of the last row/column


def map_polygons(
    smap: SlideMap,
    *,
    class_names: Sequence[str],
    threshold: float | None = None,
    min_area_cells: int = 4,
    ignore_classes: Sequence[str] = (),
    slide_dimensions: tuple[int, int] | None = None,
) -> list[MapPolygon]:
    """The regions of every class as polygons with holes, in level-0 slide pixels.

    Which cells belong to a class: one channel — computed cells with ``p >= threshold`` (0.5 when
    ``None``); several channels — computed cells whose argmax is the class (and, when ``threshold`` is
    given, whose probability reaches it). Regions are 4-connected; boundaries run along cell edges, map
    cell ``(i, j)`` covering level-0 ``[j·d, (j+1)·d) × [i·d, (i+1)·d)``, so the polygons rasterise back to
    the cells exactly. Coordinates are clipped to the slide (the map's last row/column may reach past it).

    Args:
        smap: the map.
        class_names: one name per channel.
        threshold: see above.
        min_area_cells: regions of fewer cells are dropped, and holes of fewer cells filled (noise);
            1 keeps everything.
        ignore_classes: class names not to trace (e.g. a background class).
        slide_dimensions: level-0 ``(width, height)`` to clip to; ``None`` reads it from ``smap.slide`` when
            that file opens, and otherwise leaves the coordinates unclipped.

    Returns:
        :class:`MapPolygon` tuples ``(class_name, [outer, *holes])``, by class, then top to bottom.
    """
    probs = _check_map("map_polygons", smap)
    names = _check_names("map_polygons", class_names, probs.shape[0])
    thr = _check_threshold("map_polygons", threshold)
    if isinstance(min_area_cells, bool) or not isinstance(min_area_cells, (int, np.integer)) or min_area_cells < 1:
        raise ValueError(f"map_polygons: min_area_cells must be an integer >= 1, got {min_area_cells!r}")
    unknown = sorted(set(ignore_classes) - set(names))
    if isinstance(ignore_classes, str) or unknown:
        raise ValueError(f"map_polygons: ignore_classes must name classes among {names}, got {ignore_classes!r}")
    d = int(smap.downsample)
    dims = _slide_dimensions(smap, slide_dimensions)
    cls = _classify(probs, thr)
    out: list[MapPolygon] = []
    for k, name in enumerate(names):
        if name in ignore_classes:
            continue
        mask = cls == k
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        sub = np.pad(mask[r0:r1, c0:c1], 1)  # a frame of background: the outside is one region
        if min_area_cells > 1:
            sub = _drop_small(sub, min_area_cells)
        labels, n = ndimage.label(sub)  # default structure: 4-connectivity
        if not n:
            continue
        rings = _trace_rings(labels)
        # outer ring (positive area) first within each region, regions in label (raster) order
        ring_order = np.lexsort((-rings.area2, rings.region))
        region, area2 = rings.region[ring_order], rings.area2[ring_order]
        first = np.flatnonzero(np.r_[True, region[1:] != region[:-1]])
        outer_ok = area2[first] > 0
        holes_ok = np.ones(len(area2), dtype=bool)
        holes_ok[first] = False
        if not outer_ok.all() or (area2[holes_ok] >= 0).any():
            raise RuntimeError(f"boundary tracing found no single outline for a region of {name!r}")
        # level-0 coordinates, every ring closed by repeating its first vertex
        lengths = np.diff(rings.starts)[ring_order]
        begins = rings.starts[:-1][ring_order]
        closed_len = lengths + 1
        ends = np.cumsum(closed_len)
        take = np.arange(ends[-1]) - np.repeat(ends - closed_len, closed_len) + np.repeat(begins, closed_len)
        take[ends - 1] = begins
        v = rings.vertices[take]
        v += np.array([c0 - 1, r0 - 1], dtype=np.int64)  # undo the crop and the frame
        v *= d
        if dims is not None:
            np.minimum(v, np.array(dims, dtype=np.int64), out=v)
        cuts = np.r_[0, ends].tolist()
        with _gc_paused():
            pieces = [v[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
            bounds = np.r_[first, len(pieces)].tolist()
            out.extend(MapPolygon(name, pieces[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    return out


def _drop_small(mask: np.ndarray, min_cells: int) -> np.ndarray:
    """Remove 4-connected regions and fill enclosed 4-connected holes of fewer than ``min_cells`` cells."""
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    small = sizes < min_cells
    small[0] = False
    mask = mask & ~small[labels]
    holes, _ = ndimage.label(~mask)
    sizes = np.bincount(holes.ravel())
    fill = sizes < min_cells
    fill[0] = False
    # the frame touches the border, so the outside is never "small enough" to fill unless the crop is tiny
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    fill[border] = False
    return mask | fill[holes]


def write_geojson(
    path: str | os.PathLike,
    smap: SlideMap,
    *,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    threshold: float | None = None,
    object_type: str = "annotation",
    min_area_cells: int = 4,
    ignore_classes: Sequence[str] = (),
    merge: bool = False,
    slide_dimensions: tuple[int, int] | None = None,
) -> Path:
    """Write the regions of every class as a GeoJSON FeatureCollection that QuPath imports.

    Each feature is a ``Polygon`` (outer ring and holes, closed rings, level-0 pixel coordinates with the
    origin at the slide's top-left corner) with ``properties = {"objectType": object_type,
    "classification": {"name": ..., "color": [r, g, b]}}``; with ``merge=True`` one ``MultiPolygon``
    feature per class instead. Region selection, thresholds and clipping are those of :func:`map_polygons`.

    Args:
        path: output ``.geojson``/``.json`` file; its folder must exist.
        smap: the map.
        class_names: one name per channel.
        colors: one ``(r, g, b)`` per channel (0–255); default :func:`default_colors`.
        threshold, min_area_cells, ignore_classes, slide_dimensions: see :func:`map_polygons`.
        object_type: ``"annotation"`` (editable regions in QuPath) or ``"detection"``.
        merge: one MultiPolygon feature per class rather than one Polygon per region.

    Returns:
        ``path``.
    """
    path = _output_path(path, (".geojson", ".json"))
    probs = _check_map(path, smap)
    names = _check_names(path, class_names, probs.shape[0])
    palette = dict(zip(names, _check_colors(path, colors, len(names))))
    if object_type not in _OBJECT_TYPES:
        raise ValueError(f"{path}: object_type must be one of {_OBJECT_TYPES}, got {object_type!r}")
    try:
        polygons = map_polygons(
            smap, class_names=names, threshold=threshold, min_area_cells=min_area_cells,
            ignore_classes=ignore_classes, slide_dimensions=slide_dimensions,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None

    def properties(name: str) -> dict:
        return {"objectType": object_type, "classification": {"name": name, "color": list(palette[name])}}

    with _gc_paused():
        text = _feature_collection(polygons, merge, properties)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return _write_atomically(path, write)


def _feature_collection(polygons: list[MapPolygon], merge: bool, properties: Callable[[str], dict]) -> str:
    """The GeoJSON text of ``polygons``: one Polygon feature each, or one MultiPolygon per class."""
    features = []
    if merge:
        by_class: dict[str, list] = {}
        for poly in polygons:
            by_class.setdefault(poly.class_name, []).append([ring.tolist() for ring in poly.rings])
        for name, parts in by_class.items():
            geometry = {"type": "MultiPolygon", "coordinates": parts}
            features.append({"type": "Feature", "geometry": geometry, "properties": properties(name)})
    else:
        for poly in polygons:
            geometry = {"type": "Polygon", "coordinates": [ring.tolist() for ring in poly.rings]}
            features.append({"type": "Feature", "geometry": geometry, "properties": properties(poly.class_name)})
    collection = {"type": "FeatureCollection", "features": features}
    # dumps, not dump: the one-shot C encoder is several times faster than dump's chunked writes
    return json.dumps(collection, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------------------------------------
def write_nifti(path: str | os.PathLike, smap: SlideMap) -> Path:
    """Write the float maps as NIfTI-1 with their spacing in millimetres.

    The volume is ``(w, h, 1, C)`` float32 (axis 0 = x = map columns, axis 1 = y = rows, channels along the
    4th axis), NaN where no data; the affine scales voxels by ``smap.mpp / 1000`` mm and puts voxel
    ``(0, 0)``'s centre at half a cell from the slide's corner. Units are recorded as millimetres.

    Args:
        path: output ``.nii`` or ``.nii.gz`` file; its folder must exist.
        smap: the map.

    Returns:
        ``path``.
    """
    import nibabel as nib

    path = _output_path(path, (".nii", ".nii.gz"))
    probs = _check_map(path, smap)
    spacing = float(smap.mpp) / 1000.0
    volume = np.ascontiguousarray(np.transpose(probs.astype(np.float32, copy=False), (2, 1, 0))[:, :, None, :])
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:2, 3] = spacing / 2
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = Path(str(getattr(smap, "slide", ""))).name.encode()[:79]
    return _write_atomically(path, lambda tmp: nib.save(image, tmp))
