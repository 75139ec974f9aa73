"""Output formats: slide maps and masks in the files that pathologists' and researchers' tools read.

A :class:`~monai_wsseg.inference.engine.SlideMap` holds ``(C, h, w)`` probabilities at an integer
``downsample`` of the slide (map cell ``(i, j)`` covers level-0 pixels ``[j·d, (j+1)·d) × [i·d, (i+1)·d)``),
NaN where nothing was computed. The writers turn it into:

* :func:`write_map_tiff` (:mod:`.map_tiff`) — a pyramidal tiled TIFF (uint8, zlib) whose resolution tag is
  the map's microns per cell, so OpenSlide, tiffslide, cuCIM and QuPath place it over the slide;
* :func:`write_overlay_png` (:mod:`.overlay`) — the map blended over a slide thumbnail, with a legend;
* :func:`map_polygons` (:mod:`.polygons`, traced by :mod:`.rings`) / :func:`write_geojson`
  (:mod:`.geojson`) — the regions of every class as polygons with holes, in level-0 pixels, as a GeoJSON
  FeatureCollection that QuPath imports as classified annotations;
* :func:`write_nifti` (:mod:`.nifti`) — the raw float maps with their spacing in millimetres.

:mod:`.palettes` holds the colour tables (dataset class colours, overlay colours) and writes palette PNG
masks of the patch datasets; :func:`save_png` (:mod:`.png`) writes any PIL image as a PNG atomically.
:mod:`.checks` holds what the map writers share.
:mod:`.report_html` writes the static HTML report of a cohort run (maps, metrics, a sweep's matrices).

Every writer validates its inputs (``ValueError`` naming the output and the problem) and writes through
:func:`monai_wsseg.utils.atomic.write_atomically`, so a crash or an error never leaves a partial file under
the final name. Torch and MONAI are not imported (maps are read through their attributes); tifffile and
nibabel only when their writer is called.
"""

from monai_wsseg.io.geojson import write_geojson
from monai_wsseg.io.map_tiff import NO_DATA_LABEL, write_map_tiff
from monai_wsseg.io.nifti import write_nifti
from monai_wsseg.io.overlay import write_overlay_png
from monai_wsseg.io.palettes import (
    BCSS_CLASSES,
    CLASS_COLOURS,
    LUAD_CLASSES,
    PALETTES,
    WHITE,
    class_palette,
    default_colors,
    flat_palette,
    index_palette,
    write_palette_mask,
)
from monai_wsseg.io.png import save_png
from monai_wsseg.io.polygons import MapPolygon, map_polygons

__all__ = [
    "BCSS_CLASSES",
    "CLASS_COLOURS",
    "LUAD_CLASSES",
    "NO_DATA_LABEL",
    "PALETTES",
    "WHITE",
    "MapPolygon",
    "class_palette",
    "default_colors",
    "flat_palette",
    "index_palette",
    "map_polygons",
    "save_png",
    "write_geojson",
    "write_map_tiff",
    "write_nifti",
    "write_overlay_png",
    "write_palette_mask",
]
