"""The regions of every class of a slide map as polygons with holes, in level-0 slide pixels.

Cells are classified as by the other writers (:func:`~monai_wsseg.io.checks.classify`), each class's
4-connected regions traced along cell edges (:mod:`monai_wsseg.io.rings`), and the outlines scaled by the
map's downsample: map cell ``(i, j)`` covers level-0 ``[j·d, (j+1)·d) × [i·d, (i+1)·d)``, so the polygons
rasterise back to the cells exactly. :func:`~monai_wsseg.io.geojson.write_geojson` writes them for QuPath;
region inference (:mod:`monai_wsseg.inference.region`) and the MONAI Label app return them to viewers.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import ndimage

from monai_wsseg.io.checks import check_map, check_names, check_threshold, classify
from monai_wsseg.io.rings import trace_rings

if TYPE_CHECKING:  # importing the engine pulls in torch and MONAI; the writers need neither
    from monai_wsseg.inference.engine import SlideMap

__all__ = ["MapPolygon", "gc_paused", "map_polygons"]


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


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
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
            w0, h0 = slide.dimensions
            return int(w0), int(h0)
    except Exception:  # any reader's error: an unreadable slide only costs the clipping
        return None  # of the last row/column, which is no reason to fail the polygons


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
    probs = check_map("map_polygons", smap)
    names = check_names("map_polygons", class_names, probs.shape[0])
    thr = check_threshold("map_polygons", threshold)
    if isinstance(min_area_cells, bool) or not isinstance(min_area_cells, (int, np.integer)) or min_area_cells < 1:
        raise ValueError(f"map_polygons: min_area_cells must be an integer >= 1, got {min_area_cells!r}")
    unknown = sorted(set(ignore_classes) - set(names))
    if isinstance(ignore_classes, str) or unknown:
        raise ValueError(f"map_polygons: ignore_classes must name classes among {names}, got {ignore_classes!r}")
    d = int(smap.downsample)
    dims = _slide_dimensions(smap, slide_dimensions)
    cls = classify(probs, thr)
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
        rings = trace_rings(labels)
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
        with gc_paused():
            pieces = [v[a:b] for a, b in itertools.pairwise(cuts)]
            bounds = np.r_[first, len(pieces)].tolist()
            out.extend(MapPolygon(name, pieces[a:b]) for a, b in itertools.pairwise(bounds))
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
