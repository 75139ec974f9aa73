"""Infer one region of a slide exactly as a whole-slide run would, and trace its regions as polygons.

Interactive viewers (QuPath, Digital Slide Archive through MONAI Label) ask for the classes of the region
a user looks at. Running the whole-slide :class:`~monai_wsseg.inference.engine.WSIInferer` there would
compute the whole slide; running the network on the region's pixels alone would change the values at its
borders (the network sees no context there) and differ from the maps a cohort run writes. Instead the
whole slide's tile plan is made as usual and only the tiles that reach the region are run: every cell of
the region gets the same tiles, halo and averaging as in the whole-slide map, so its values are equal.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from monai_wsseg.inference.engine import SlideMap, WSIInferer
from monai_wsseg.inference.tiles import TilePlan
from monai_wsseg.io import MapPolygon, map_polygons
from monai_wsseg.wsi.slide import Slide, open_slide
from monai_wsseg.wsi.tissue import TissueMask, compute_tissue_mask

__all__ = ["RegionMap", "infer_region", "region_cells"]


@dataclass
class RegionMap:
    """The map cells that cover one level-0 region of a slide.

    Attributes:
        slide: path of the slide.
        probabilities: ``(C, h, w)`` float32, NaN where no tile was computed (as in a whole-slide map).
        downsample: level-0 pixels per map cell.
        mpp: microns per map cell.
        origin: level-0 ``(x, y)`` of cell ``[0, 0]`` (a multiple of ``downsample``).
        slide_dimensions: level-0 ``(width, height)`` of the slide.
        unread: level-0 ``(x, y, width, height)`` boxes of windows that could not be read.
    """

    slide: str
    probabilities: np.ndarray
    downsample: int
    mpp: float
    origin: tuple[int, int]
    slide_dimensions: tuple[int, int]
    unread: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Level-0 ``(x, y, width, height)`` covered by the cells (clipped to the slide)."""
        (x, y), d = self.origin, self.downsample
        h, w = self.probabilities.shape[1:]
        return x, y, min(w * d, self.slide_dimensions[0] - x), min(h * d, self.slide_dimensions[1] - y)

    def polygons(
        self,
        class_names: Sequence[str],
        threshold: float | None = None,
        min_area_cells: int = 1,
        ignore_classes: Sequence[str] = (),
        holes: bool = True,
    ) -> list[MapPolygon]:
        """The regions of every class in these cells as level-0 polygons (see
        :func:`~monai_wsseg.io.polygons.map_polygons`, whose rules and arguments these are).

        A region that continues outside these cells is cut at their border, so the polygons of adjacent
        regions tile the polygons of a whole-slide map.

        Args:
            holes: ``False`` returns polygons without holes for clients that draw only outer rings (MONAI
                Label's ASAP and DSA answers): a region with holes is cut along the top edge of each hole
                into bands (a hole then opens onto a cut), so the polygons still cover exactly its cells.
                Then ``min_area_cells`` must be 1, as the pieces of a large region may be small.
        """
        if holes:
            return self._trace(0, self.probabilities.shape[1], class_names, threshold, min_area_cells, ignore_classes)
        if min_area_cells != 1:
            raise ValueError(f"{self.slide}: polygons without holes need min_area_cells=1, got {min_area_cells}")
        out: list[MapPolygon] = []
        d, y0 = self.downsample, self.origin[1]
        for name in class_names:
            if name in ignore_classes:
                continue
            others = [n for n in class_names if n != name]
            bands = [(0, self.probabilities.shape[1])]
            while bands:
                r0, r1 = bands.pop()
                polys = self._trace(r0, r1, class_names, threshold, 1, others)
                cuts = sorted({(int(ring[:, 1].min()) - y0) // d for p in polys for ring in p.rings[1:]})
                if not cuts:
                    out += polys
                    continue
                # A hole's top row lies strictly inside its band (cells of the region lie above it).
                edges = [r0, *cuts, r1]
                bands += list(itertools.pairwise(edges))
        return out

    def _trace(self, r0: int, r1: int, class_names: Sequence[str], threshold: float | None, min_area_cells: int,
               ignore_classes: Sequence[str]) -> list[MapPolygon]:
        """:func:`map_polygons` of cell rows ``[r0, r1)``, in level-0 coordinates."""
        d = self.downsample
        (x0, y0), (w0, h0) = self.origin, self.slide_dimensions
        top = y0 + r0 * d
        local = SlideMap(self.slide, self.probabilities[:, r0:r1], d, self.mpp)
        polys = map_polygons(local, class_names=class_names, threshold=threshold, min_area_cells=min_area_cells,
                             ignore_classes=ignore_classes, slide_dimensions=(w0 - x0, h0 - top))
        shift = np.array([x0, top], dtype=np.int64)
        return [MapPolygon(p.class_name, [ring + shift for ring in p.rings]) for p in polys]


def region_cells(plan: TilePlan, box: Sequence[int]) -> tuple[int, int, int, int]:
    """Map cells ``(x0, y0, x1, y1)`` (end exclusive) of ``plan`` that a level-0 ``(x, y, w, h)`` box touches."""
    x, y, w, h = (int(v) for v in box)
    d = plan.downsample
    map_w, map_h = plan.map_size
    x0, y0 = max(0, x // d), max(0, y // d)
    x1, y1 = min(map_w, -(-(x + w) // d)), min(map_h, -(-(y + h) // d))
    return x0, y0, x1, y1


def infer_region(
    inferer: WSIInferer,
    slide: Slide | str | os.PathLike,
    box: Sequence[int],
    tissue: TissueMask | None = None,
) -> RegionMap:
    """The maps of the cells that a level-0 ``(x, y, width, height)`` box touches, equal to the same cells
    of ``inferer(slide)``: the whole-slide tile plan (tissue filter included) is made and only its tiles
    that reach those cells are read and run.

    Args:
        inferer: the whole-slide inferer of a bundle.
        slide: the slide or its path.
        box: level-0 region; parts outside the slide are ignored.
        tissue: the slide's tissue mask (computed when ``None``; pass it when inferring many regions).

    Raises:
        ValueError: the box is empty or lies outside the slide (the message names both).
    """
    if not isinstance(slide, Slide):
        slide = open_slide(slide)
    if len(box) != 4:
        raise ValueError(f"{slide.path}: a region is (x, y, width, height), got {tuple(box)}")
    x, y, w, h = (int(v) for v in box)
    sw, sh = slide.dimensions
    if w <= 0 or h <= 0 or x >= sw or y >= sh or x + w <= 0 or y + h <= 0:
        raise ValueError(f"{slide.path}: region (x={x}, y={y}, w={w}, h={h}) is empty or outside the slide "
                         f"({sw} x {sh} px)")
    if tissue is None:
        tissue = compute_tissue_mask(slide, mpp=inferer.tissue_mpp)
    plan = inferer.plan(slide, tissue)
    tc = plan.tile_cells
    cx0, cy0, cx1, cy1 = region_cells(plan, (x, y, w, h))
    cells = plan.cells
    reach = (cells[:, 0] < cx1) & (cells[:, 0] + tc > cx0) & (cells[:, 1] < cy1) & (cells[:, 1] + tc > cy0)
    # The tiles that reach the region start at most tc - 1 cells before it (and never before cell 0): a map
    # frame starting ``lead`` cells earlier holds them all, and the region is cropped from it afterwards.
    lead_x, lead_y = min(cx0, tc), min(cy0, tc)
    base = np.array([cx0 - lead_x, cy0 - lead_y], dtype=np.int64)
    local = replace(plan, cells=cells[reach] - base, origins=plan.origins[reach],
                    map_size=(cx1 - int(base[0]), cy1 - int(base[1])))
    smap = inferer(slide, plan=local)
    probs = np.ascontiguousarray(smap.probabilities[:, lead_y:, lead_x:])
    d = plan.downsample
    return RegionMap(str(slide.path), probs, d, smap.mpp, (cx0 * d, cy0 * d), (sw, sh), list(smap.unread))
