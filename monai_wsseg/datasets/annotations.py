"""Expert regions drawn in QuPath: GeoJSON exports read as polygons and rasterised onto a mask grid.

A pathologist's tumor regions exported from QuPath (*Export objects as GeoJSON*) become the same
``(h, w)`` uint8 mask that a PNG expert mask at downsample ``d`` gives, so both score identically
(:func:`~monai_wsseg.metrics.tumor_maps.load_mask`, :func:`~monai_wsseg.metrics.tumor_maps.mask_on_grid`).

Conventions:

* **Input**: a ``FeatureCollection``, a bare list of features, or a single ``Feature`` (QuPath versions
  differ). Coordinates are level-0 pixels, x right and y down. Regions are ``Polygon`` and
  ``MultiPolygon`` geometries (also inside a ``GeometryCollection``) with holes as interior rings;
  ``Point``/``LineString`` geometries (and their ``Multi`` forms) are not regions: they are skipped and
  counted in a debug-level log line. A ring's closing point may be repeated or not; a third coordinate
  (z) is ignored.
* **Class** of a feature: ``properties.classification.name`` (QuPath), else
  ``properties.classification`` when it is a string, else ``properties.name``; matched against the
  requested ``classes`` case-insensitively. Features of other classes are ignored without being checked.
* **Grid**: at downsample ``d`` the mask has shape ``(ceil(H / d), ceil(W / d))`` for a level-0 slide of
  ``(W, H)``, which :func:`~monai_wsseg.datasets.masks.mask_downsample` maps back to ``d``. Mask pixel
  ``(i, j)`` covers level-0 ``[j·d, (j+1)·d) x [i·d, (i+1)·d)``.
* **Inside**: a pixel is inside a polygon when its centre ``((j + ½)·d, (i + ½)·d)`` is. A centre exactly
  on an edge follows the top-left rule (as Java2D, which draws QuPath's own label images): on a left or
  top edge it is inside, on a right or bottom edge outside, so polygons that share an edge share no pixel
  and an axis-aligned rectangle with corners at multiples of ``d`` gives exactly its block of pixels.
  Each ring is filled with the even-odd rule. With integer vertices (QuPath's usual) the rule is applied
  exactly, ties on slanted edges included; other vertices are subject to float rounding only where an
  edge passes within about 1e-12 px of a centre.
* **Holes and overlaps**: per polygon, the exterior is filled and its holes are subtracted; polygons
  (MultiPolygon parts and features alike) are then united. A region drawn inside another feature's hole
  is therefore kept. Parts of polygons beyond the mask grid are clipped.

Filling is a vectorised scanline (``O(edge-row crossings)``), not :func:`skimage.draw.polygon`, whose
cost is ``bounding-box pixels x vertices`` (minutes for one 20,000-vertex QuPath outline) and which
counts every centre on an edge as inside; for centres off the edges both agree (tested).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ANNOTATION_EXTENSIONS",
    "DEFAULT_CLASSES",
    "AnnotationPolygon",
    "annotation_mask_shape",
    "load_annotation_mask",
    "rasterise_annotations",
    "read_annotations",
]

logger = logging.getLogger(__name__)

#: File suffixes of GeoJSON annotation files (QuPath writes ``.geojson``; older exports ``.json``).
ANNOTATION_EXTENSIONS: tuple[str, ...] = (".geojson", ".json")
#: The class names read when none are given.
DEFAULT_CLASSES: tuple[str, ...] = ("Tumor",)
_NON_REGIONS = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString"})


@dataclass(frozen=True, eq=False)
class AnnotationPolygon:
    """One polygon of an annotation file: a MultiPolygon gives one per part.

    Attributes:
        exterior: ``(N, 2)`` float64 ``(x, y)`` vertices in level-0 pixels, ``N >= 3``, not closed (the
            first vertex is not repeated at the end).
        holes: interior rings, each like ``exterior``.
        class_name: the feature's class as written in the file (``None`` = unclassified).
        feature: index of the feature in the file (errors name it).
        source: the file it came from (errors start with it).
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    class_name: str | None = None
    feature: int = 0
    source: str = "<annotations>"

    def __post_init__(self) -> None:
        """Check the rings and store them as ``(N, 2)`` float64 without the closing repeat."""
        where = f"{self.source}: feature {self.feature}"
        object.__setattr__(self, "exterior", _as_ring(self.exterior, f"{where}: exterior ring"))
        holes = tuple(_as_ring(h, f"{where}: hole {k}") for k, h in enumerate(self.holes))
        object.__setattr__(self, "holes", holes)


def read_annotations(
    path: str | os.PathLike,
    classes: Sequence[str] | None = DEFAULT_CLASSES,
    *,
    allow_empty: bool = False,
) -> list[AnnotationPolygon]:
    """Read the polygons of the requested classes from a QuPath GeoJSON export.

    Args:
        path: a ``.geojson`` / ``.json`` file: a FeatureCollection, a list of features, or one Feature.
        classes: class names that count as foreground, matched case-insensitively (see the module doc);
            ``None``: every feature, classified or not (regions of interest).
        allow_empty: return ``[]`` instead of raising when no region of ``classes`` is in the file (e.g.
            the reference of an all-normal slide).

    Returns:
        One :class:`AnnotationPolygon` per Polygon / MultiPolygon part of the matching features, in file
        order. Counts of skipped non-region geometries and other-class features are logged at debug level.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: one line starting with the path and naming the problem (and the feature index): not
            JSON, not a FeatureCollection / Feature / list, a feature that is not an object or has no
            geometry, an unsupported geometry type, malformed or non-numeric or non-finite coordinates, a
            ring with fewer than 3 distinct points, or no region of ``classes`` (the classes found are listed).
    """
    path = Path(path)
    wanted = None if classes is None else _class_keys(classes, path)
    features = _features(_load_json(path), path)
    polygons: list[AnnotationPolygon] = []
    found: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    other_classes = wanted_non_regions = 0
    for index, feature in enumerate(features):
        if not isinstance(feature, dict):
            raise ValueError(f"{path}: feature {index} is not a JSON object (got {_describe(feature)})")
        if "type" in feature and feature["type"] != "Feature":
            raise ValueError(f"{path}: feature {index} has type {feature['type']!r}, not 'Feature'")
        name = _class_name(feature.get("properties"))
        found[_show_class(name)] += 1
        if wanted is not None and (name is None or name.strip().casefold() not in wanted):
            other_classes += 1
            continue
        where = f"{path}: feature {index} (class {name!r})"
        geometry = feature.get("geometry")
        if geometry is None:
            raise ValueError(f"{where} has no geometry")
        before = sum(skipped.values())
        rings = _regions(geometry, where, skipped)
        if not rings and sum(skipped.values()) > before:
            wanted_non_regions += 1
        for exterior, holes in rings:
            polygons.append(AnnotationPolygon(exterior, holes, name, index, str(path)))
    logger.debug(
        "%s: %d polygon(s) of classes %s from %d feature(s); skipped %d other-class feature(s) and "
        "non-region geometries %s",
        path, len(polygons), "all" if classes is None else list(classes), len(features), other_classes,
        dict(skipped) or "none",
    )
    if not polygons and not allow_empty:
        shown = ", ".join(f"{c} ({n})" for c, n in sorted(found.items())) or "none, the file has no features"
        extra = f"; {wanted_non_regions} feature(s) of those classes are points or lines" if wanted_non_regions else ""
        raise ValueError(
            f"{path}: no Polygon/MultiPolygon feature"
            f"{'' if classes is None else ' of class ' + ' / '.join(map(repr, classes))} "
            f"(classes found: {shown}{extra})"
        )
    return polygons


def annotation_mask_shape(slide_size: tuple[int, int], downsample: int) -> tuple[int, int]:
    """Shape ``(ceil(H / d), ceil(W / d))`` of the mask of a level-0 ``(W, H)`` slide at downsample ``d``.

    Args:
        slide_size: level-0 ``(width, height)`` in pixels.
        downsample: level-0 pixels per mask pixel, a positive integer.

    Returns:
        ``(rows, columns)`` of the mask.

    Raises:
        ValueError: sizes that are not two positive integers, or a downsample that is not a positive integer.
    """
    (w, h), d = _check_grid(slide_size, downsample, "annotation mask")
    return -(-h // d), -(-w // d)


def rasterise_annotations(
    polygons: Iterable[AnnotationPolygon],
    slide_size: tuple[int, int],
    downsample: int,
) -> np.ndarray:
    """Rasterise polygons onto the mask grid of a slide (conventions in the module doc).

    Args:
        polygons: e.g. from :func:`read_annotations`; coordinates in level-0 pixels.
        slide_size: level-0 ``(width, height)`` of the slide in pixels.
        downsample: level-0 pixels per mask pixel, a positive integer.

    Returns:
        ``(ceil(H / d), ceil(W / d))`` uint8, 1 = inside a polygon (outside its holes) and 0 = not, as
        :func:`~monai_wsseg.metrics.tumor_maps.load_mask` returns for a PNG mask.

    Raises:
        ValueError: a bad ``slide_size`` or ``downsample``, or a feature whose polygons' bounding box lies
            entirely outside the slide ``[0, W) x [0, H)`` (the message starts with its file and names the
            feature).
    """
    polygons = list(polygons)
    where = polygons[0].source if polygons else "rasterise_annotations"
    (w, h), d = _check_grid(slide_size, downsample, where)
    _check_on_slide(polygons, w, h)
    rows, cols = -(-h // d), -(-w // d)
    out = np.zeros((rows, cols), np.uint8)
    for polygon in polygons:
        # In grid units pixel (i, j) has its centre at (j + 0.5, i + 0.5).
        lo = np.ceil(polygon.exterior.min(axis=0) / d - 0.5)
        hi = np.ceil(polygon.exterior.max(axis=0) / d - 0.5)
        c0, r0 = (int(v) for v in np.clip(lo, 0, (cols, rows)))
        c1, r1 = (int(v) for v in np.clip(hi, 0, (cols, rows)))
        if r0 >= r1 or c0 >= c1:
            continue
        window = (r0, r1, c0, c1)
        region = _fill_ring(polygon.exterior, d, window)
        for hole in polygon.holes:
            region &= ~_fill_ring(hole, d, window)
        out[r0:r1, c0:c1] |= region
    return out


def load_annotation_mask(
    path: str | os.PathLike,
    slide_size: tuple[int, int],
    downsample: int,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    allow_empty: bool = False,
) -> np.ndarray:
    """Read a QuPath GeoJSON export and rasterise its regions of ``classes`` at ``downsample``.

    Args:
        path: the ``.geojson`` / ``.json`` file (see :func:`read_annotations`).
        slide_size: level-0 ``(width, height)`` of the slide in pixels.
        downsample: level-0 pixels per mask pixel, a positive integer.
        classes: class names that count as foreground (case-insensitive).
        allow_empty: an all-zero mask instead of an error when the file holds no region of ``classes``.

    Returns:
        ``(ceil(H / d), ceil(W / d))`` uint8 mask, 1 = foreground (see :func:`rasterise_annotations`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: see :func:`read_annotations` and :func:`rasterise_annotations`; messages start with the path.
    """
    _check_grid(slide_size, downsample, path)
    polygons = read_annotations(path, classes, allow_empty=allow_empty)
    return rasterise_annotations(polygons, slide_size, downsample)


# ---------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------
def _load_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: annotation file not found")
    if not path.is_file():
        raise ValueError(f"{path}: annotation path is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{path}: not JSON this reader accepts (nested too deeply)") from None


def _features(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        kind = data.get("type")
        if kind == "FeatureCollection":
            features = data.get("features")
            if not isinstance(features, list):
                raise ValueError(f"{path}: FeatureCollection has no 'features' list (got {_describe(features)})")
            return features
        if kind == "Feature":
            return [data]
    raise ValueError(f"{path}: not a GeoJSON FeatureCollection, Feature or list of features (got {_describe(data)})")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object of type {value['type']!r}" if "type" in value else "an object without 'type'"
    if value is None:
        return "null"
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _class_keys(classes: Sequence[str], path: Path) -> set[str]:
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes) or not classes:
        raise ValueError(f"{path}: classes must be a non-empty sequence of class names, got {classes!r}")
    return {c.strip().casefold() for c in classes}


def _class_name(properties: Any) -> str | None:
    if not isinstance(properties, dict):
        return None
    classification = properties.get("classification")
    if isinstance(classification, dict):
        name = classification.get("name")
        if isinstance(name, str):
            return name
        names = classification.get("names")  # derived classes, e.g. ["Tumor", "Positive"]
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return ": ".join(names)
    elif isinstance(classification, str):
        return classification
    name = properties.get("name")
    return name if isinstance(name, str) else None


def _show_class(name: str | None) -> str:
    return "unclassified" if name is None else repr(name)


def _regions(geometry: Any, where: str, skipped: Counter[str]) -> list[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
    """``(exterior, holes)`` of each polygon of a geometry; non-region geometries are counted in ``skipped``."""
    if not isinstance(geometry, dict):
        raise ValueError(f"{where}: geometry is not a GeoJSON object (got {_describe(geometry)})")
    kind = geometry.get("type")
    if kind == "Polygon":
        return [_polygon(geometry.get("coordinates"), f"{where}: Polygon")]
    if kind == "MultiPolygon":
        parts = geometry.get("coordinates")
        if not isinstance(parts, list) or not parts:
            raise ValueError(f"{where}: MultiPolygon coordinates are not a non-empty list of polygons")
        return [_polygon(part, f"{where}: MultiPolygon part {k}") for k, part in enumerate(parts)]
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list):
            raise ValueError(f"{where}: GeometryCollection has no 'geometries' list")
        out = []
        for k, member in enumerate(members):
            out += _regions(member, f"{where}: GeometryCollection member {k}", skipped)
        return out
    if kind in _NON_REGIONS:
        skipped[str(kind)] += 1
        return []
    raise ValueError(f"{where}: unsupported geometry type {kind!r} (expected Polygon or MultiPolygon)")


def _polygon(rings: Any, where: str) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    if not isinstance(rings, list) or not rings:
        raise ValueError(f"{where} coordinates are not a non-empty list of rings")
    parsed = [_parse_ring(ring, f"{where} ring {k} ({'exterior' if k == 0 else 'hole'})")
              for k, ring in enumerate(rings)]
    return parsed[0], tuple(parsed[1:])


def _parse_ring(ring: Any, where: str) -> np.ndarray:
    if not isinstance(ring, list):
        raise ValueError(f"{where} is not a list of [x, y] positions (got {_describe(ring)})")
    for k, position in enumerate(ring):
        if not isinstance(position, list) or len(position) < 2:
            raise ValueError(f"{where}: position {k} is not an [x, y] list (got {position!r:.60})")
        for value in position[:2]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}: position {k} has a non-numeric coordinate {value!r:.40}")
    return _as_ring(np.array([p[:2] for p in ring], dtype=np.float64).reshape(-1, 2), where)


def _as_ring(vertices: Any, where: str) -> np.ndarray:
    """``(N, 2)`` float64 of distinct-enough, finite vertices without the closing repeat."""
    try:
        ring = np.array(vertices, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: vertices are not numeric (x, y) pairs") from None
    if ring.ndim != 2 or ring.shape[1] != 2:
        raise ValueError(f"{where}: vertices must be an (N, 2) array of (x, y), got shape {ring.shape}")
    bad = ~np.isfinite(ring).all(axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{where}: position {k} has a non-finite coordinate {ring[k].tolist()}")
    if len(ring) > 1 and (ring[0] == ring[-1]).all():
        ring = ring[:-1]
    distinct = len(np.unique(ring, axis=0))
    if distinct < 3:
        raise ValueError(f"{where} has {distinct} distinct point(s); a ring needs at least 3")
    return ring


# ---------------------------------------------------------------------------------------------------------
# rasterising
# ---------------------------------------------------------------------------------------------------------
def _check_grid(slide_size: Any, downsample: Any, where: str | os.PathLike) -> tuple[tuple[int, int], int]:
    try:
        w, h = slide_size
        ok = all(not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 1 for v in (w, h))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{where}: slide size {slide_size!r} is not two positive integers (width, height)")
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise ValueError(f"{where}: downsample {downsample!r} is not a positive integer (level-0 pixels per pixel)")
    return (int(w), int(h)), int(downsample)


def _check_on_slide(polygons: list[AnnotationPolygon], w: int, h: int) -> None:
    """Raise for a feature whose polygons' bounding box has no area in ``[0, w) x [0, h)``."""
    boxes: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, str | None]] = {}
    for p in polygons:
        key = (p.source, p.feature)
        lo, hi = p.exterior.min(axis=0), p.exterior.max(axis=0)
        if key in boxes:
            lo, hi = np.minimum(lo, boxes[key][0]), np.maximum(hi, boxes[key][1])
        boxes[key] = (lo, hi, p.class_name)
    for (source, feature), (lo, hi, name) in boxes.items():
        if hi[0] <= 0 or lo[0] >= w or hi[1] <= 0 or lo[1] >= h:
            raise ValueError(
                f"{source}: feature {feature} (class {name!r}) lies entirely outside the slide [0, {w}) x [0, {h}) "
                f"(x {lo[0]:g} to {hi[0]:g}, y {lo[1]:g} to {hi[1]:g}); is it the annotation of another slide?"
            )


def _fill_ring(ring: np.ndarray, d: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """Pixels of ``window = (r0, r1, c0, c1)`` whose centre ``((j + 0.5)·d, (i + 0.5)·d)`` is inside ``ring``.

    ``ring`` is ``(N, 2)`` ``(x, y)`` in level-0 pixels. Scanline, even-odd, top-left rule: an edge crosses
    row ``i`` when ``y_lo / d <= i + 0.5 < y_hi / d``, and a crossing span ``[xa, xb)`` covers the columns
    ``ceil(xa / d - 0.5)`` to ``ceil(xb / d - 0.5) - 1``. Row membership is decided per vertex, so every row
    meets an even number of edges; crossings are computed in level-0 pixels, multiplying before dividing, so
    that for integer vertices a crossing through a pixel centre is exact and the tie rule holds.
    """
    r0, r1, c0, c1 = window
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    vertex_row = np.ceil(y0 / d - 0.5)  # first row whose centre is at or below the vertex
    next_row = np.roll(vertex_row, -1)
    first = np.clip(np.minimum(vertex_row, next_row), r0, r1).astype(np.int64)
    stop = np.clip(np.maximum(vertex_row, next_row), r0, r1).astype(np.int64)
    count = stop - first
    total = int(count.sum())
    if total == 0:
        return np.zeros((r1 - r0, c1 - c0), bool)
    edge = np.repeat(np.arange(len(ring)), count)
    row = np.repeat(first, count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
    x = x0[edge] + ((row + 0.5) * d - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    x = x / d  # grid units
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    rows = row[0::2] - r0  # crossings come in pairs within each row
    start = np.clip(np.ceil(x[0::2] - 0.5), c0, c1).astype(np.int64) - c0
    end = np.clip(np.ceil(x[1::2] - 0.5), c0, c1).astype(np.int64) - c0
    keep = start < end
    rows, start, end = rows[keep], start[keep], end[keep]
    # Spans of a row are disjoint and sorted, so +1 / -1 marks summed along the row give 0 or 1.
    marks = np.zeros((r1 - r0, c1 - c0 + 1), np.int8)
    np.add.at(marks, (rows, start), 1)
    np.add.at(marks, (rows, end), -1)
    return np.cumsum(marks[:, :-1], axis=1, dtype=np.int8) > 0

