"""Slide-map regions as a GeoJSON FeatureCollection that QuPath imports as classified annotations."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from monai_wsseg.io import checks
from monai_wsseg.io.polygons import MapPolygon, gc_paused, map_polygons
from monai_wsseg.utils.atomic import write_text_atomically

if TYPE_CHECKING:  # importing the engine pulls in torch and MONAI; the writers need neither
    from monai_wsseg.inference.engine import SlideMap

__all__ = ["write_geojson"]

_OBJECT_TYPES = ("annotation", "detection")


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
    feature per class instead. Region selection, thresholds and clipping are those of
    :func:`~monai_wsseg.io.polygons.map_polygons`.

    Args:
        path: output ``.geojson``/``.json`` file; its folder must exist.
        smap: the map.
        class_names: one name per channel.
        colors: one ``(r, g, b)`` per channel (0–255); default :func:`~monai_wsseg.io.palettes.default_colors`.
        threshold, min_area_cells, ignore_classes, slide_dimensions: see :func:`~monai_wsseg.io.polygons.map_polygons`.
        object_type: ``"annotation"`` (editable regions in QuPath) or ``"detection"``.
        merge: one MultiPolygon feature per class rather than one Polygon per region.

    Returns:
        ``path``.
    """
    path = checks.output_path(path, (".geojson", ".json"))
    probs = checks.check_map(path, smap)
    names = checks.check_names(path, class_names, probs.shape[0])
    palette = dict(zip(names, checks.check_colors(path, colors, len(names)), strict=True))
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

    with gc_paused():
        text = _feature_collection(polygons, merge, properties)
    with checks.output_errors(path):
        return write_text_atomically(path, text)


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
