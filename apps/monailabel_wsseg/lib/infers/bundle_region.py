"""A MONAI Label inference task that runs one monai-wsseg bundle on a slide region and returns polygons.

The bundle's own ``inference.json`` (plus any overlay such as ``cpu.json``) is parsed with MONAI's
``ConfigParser`` and only its ``inferer`` (network, resolution, tiles, normalisation) and ``outputs``
(class names, colours, threshold) are used, so the server computes what ``python -m monai.bundle run``
writes. A region is inferred with :func:`monai_wsseg.inference.region.infer_region` (the cells of the
whole-slide map, not a crop run on its own) and traced with the project's polygon writer.

Results follow MONAI Label's pathology convention, which its QuPath and DSA clients draw::

    {"annotation": {"location": [x, y], "size": [w, h],
                    "elements": [{"label": "tumor", "contours": [[[x, y], ...], ...]}],
                    "labels": {"tumor": [r, g, b]}},
     "latencies": {"pre": s, "infer": s, "post": s, "total": s}}

Contours are level-0 pixel vertices, not repeated at the end. The clients draw polygons without holes,
so a region with holes is sent as bands cut along the holes' top edges (``RegionMap.polygons(holes=False)``),
which cover exactly its cells.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.bundle import ConfigParser
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from typing_extensions import override

from monai_wsseg.errors import project_cause
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.inference.region import infer_region, region_cells
from monai_wsseg.inference.tiles import TilePlan
from monai_wsseg.io import default_colors
from monai_wsseg.wsi.slide import Slide, open_slide
from monai_wsseg.wsi.tissue import TissueMask, compute_tissue_mask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleSpec:
    """One bundle as the app serves it.

    Attributes:
        name: the model name clients ask for.
        bundle_dir: the bundle folder (holding ``configs/``).
        config_files: config files under ``configs/``, later ones overriding earlier ones.
        weights: bundle config key → weights file (e.g. ``{"ckpt_path": ".../model.pt"}``).
        description: shown by ``/info/``.
        overrides: further bundle config values (``"key::sub"`` ids allowed).
    """

    name: str
    bundle_dir: Path
    config_files: tuple[str, ...]
    weights: dict[str, Path]
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)


class BundleRegionInfer(InferTask):
    """Serve one bundle: a request's region of a slide → the polygons of each class."""

    #: Slides whose tissue mask and tile plan are kept (a viewer pans over few slides at a time).
    CACHED_SLIDES = 8

    def __init__(self, spec: BundleSpec, device: str = "cpu", slide_mpp: float | None = None) -> None:
        """Load the bundle's inferer and outputs; ``slide_mpp`` is the level-0 µm/px of slides whose files
        record none (as the bundles' ``slide_mpp``)."""
        self.spec, self.slide_mpp = spec, slide_mpp
        parser = ConfigParser()
        parser.read_config([str(spec.bundle_dir / "configs" / f) for f in spec.config_files])
        parser["bundle_root"] = str(spec.bundle_dir)
        for key, path in spec.weights.items():
            parser[key] = str(path)
        parser["device"] = f"$torch.device({device!r})"
        # Workers would fork inside the server's threads, and a progress bar per request floods its log.
        parser["inferer::num_workers"] = 0
        parser["inferer::progress"] = False
        for key, value in spec.overrides.items():
            parser[key] = value
        try:
            self.inferer: WSIInferer = parser.get_parsed_content("inferer")
            outputs = parser.get_parsed_content("outputs")
        except Exception as exc:  # config, weights and network errors alike: say which bundle and files
            # MONAI wraps the project's message (e.g. which weights do not fit) in "Failed to evaluate ...".
            cause = project_cause(exc) or exc
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise RuntimeError(f"model {spec.name!r}: cannot load {spec.bundle_dir.name} with configs "
                               f"{list(spec.config_files)} and weights {[str(p) for p in spec.weights.values()]}: "
                               f"{first}") from exc
        self.class_names = [str(n) for n in outputs.class_names]
        self.threshold = outputs.threshold
        colors = outputs.colors or default_colors(len(self.class_names))
        self.colors = {n: [int(v) for v in c] for n, c in zip(self.class_names, colors, strict=True)}
        self._grids: OrderedDict[tuple[str, float], tuple[TissueMask, TilePlan]] = OrderedDict()
        self._lock = threading.Lock()
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=self.class_names,
            dimension=2,
            description=spec.description,
            # MONAI Label spreads WSI tiles over all GPUs by default (and fails on a machine without one);
            # the network lives on one device, so every tile runs there.
            config={"device": device, "multi_gpu": False},
        )

    @override
    def is_valid(self) -> bool:
        return True

    def grid(self, slide: Slide) -> tuple[TissueMask, TilePlan]:
        """The slide's tissue mask and whole-slide tile plan, computed once per slide file version."""
        key = (str(slide.path), os.path.getmtime(slide.path))
        with self._lock:
            if key not in self._grids:
                tissue = compute_tissue_mask(slide, mpp=self.inferer.tissue_mpp)
                self._grids[key] = tissue, self.inferer.plan(slide, tissue)
                while len(self._grids) > self.CACHED_SLIDES:
                    self._grids.popitem(last=False)
            self._grids.move_to_end(key)
            return self._grids[key]

    def open(self, image: str) -> Slide:
        """The slide at ``image`` (with ``slide_mpp`` when its file records no resolution)."""
        return open_slide(image, mpp=self.slide_mpp)

    def tiles(self, image: str, location: Sequence[int], size: Sequence[int], tile_size: Sequence[int]) -> list[dict]:
        """Split a region into MONAI Label tiles on the bundle's own tile grid.

        Tile borders fall on the whole-slide plan's tile starts (every ``step`` cells), about ``tile_size``
        level-0 pixels apart, so a window of the plan is read by one MONAI Label tile only, or for
        overlapping plans by its neighbours at the tile borders. The region is widened to whole map cells.

        Raises:
            ValueError: the region is empty or outside the slide.
        """
        with self.open(image) as slide:
            box = region_box(slide, location, size)
            _, plan = self.grid(slide)
        d, tc = plan.downsample, plan.tile_cells
        step = max(1, round(tc * (1.0 - self.inferer.overlap)))
        pitch = step * max(1, round(max(int(v) for v in tile_size) / (step * d)))
        x0, y0, x1, y1 = region_cells(plan, box)
        out = []
        for ya in range(y0 - y0 % pitch, y1, pitch):
            for xa in range(x0 - x0 % pitch, x1, pitch):
                cx0, cy0, cx1, cy1 = max(xa, x0), max(ya, y0), min(xa + pitch, x1), min(ya + pitch, y1)
                out.append({"location": [cx0 * d, cy0 * d], "size": [(cx1 - cx0) * d, (cy1 - cy0) * d]})
        return out

    def __call__(self, request: dict) -> tuple[None, dict]:
        """Infer ``request["location"]``/``["size"]`` (level 0; the whole slide when the size is 0) of the slide
        at ``request["image"]`` and return MONAI Label's pathology result (see the module docstring)."""
        start = time.time()
        image = str(request["image"])
        with self.open(image) as slide:
            box = region_box(slide, request.get("location"), request.get("size"))
            tissue, _ = self.grid(slide)
            ready = time.time()
            rmap = infer_region(self.inferer, slide, box, tissue=tissue)
        inferred = time.time()
        min_area = float(request.get("min_poly_area") or 0)
        contours: dict[str, list] = {name: [] for name in self.class_names}
        for poly in rmap.polygons(self.class_names, threshold=self.threshold, holes=False):
            outer = poly.rings[0]
            if _area(outer) >= min_area:
                contours[poly.class_name].append(outer[:-1].tolist())
        elements = [{"label": name, "contours": c} for name, c in contours.items() if c]
        done = time.time()
        if rmap.unread:
            logger.warning("%s: %d unreadable windows are no-data in this region", image, len(rmap.unread))
        result = {
            "annotation": {
                "location": [int(box[0]), int(box[1])],
                "size": [int(box[2]), int(box[3])],
                "elements": elements,
                "labels": dict(self.colors),
            },
            "latencies": {
                "pre": round(ready - start, 3),
                "infer": round(inferred - ready, 3),
                "post": round(done - inferred, 3),
                "total": round(done - start, 3),
            },
        }
        return None, result


def region_box(slide: Slide, location: Sequence[int] | None, size: Sequence[int] | None) -> tuple[int, int, int, int]:
    """Level-0 ``(x, y, w, h)`` of a request clipped to the slide (the whole slide for a missing or 0 size).

    Raises:
        ValueError: the region lies outside the slide (the message gives both).
    """
    sw, sh = slide.dimensions
    x, y = (int(v) for v in (location or (0, 0)))
    w, h = (int(v) for v in (size or (0, 0)))
    if w <= 0 or h <= 0:
        if (w, h) != (0, 0):
            raise ValueError(f"{slide.path.name}: region size must be positive, got {w} x {h}")
        x, y, w, h = 0, 0, sw, sh
    x1, y1 = min(x + w, sw), min(y + h, sh)
    x, y = max(x, 0), max(y, 0)
    if x >= x1 or y >= y1:
        raise ValueError(f"{slide.path.name}: region at ({x}, {y}) of {w} x {h} px lies outside the slide "
                         f"({sw} x {sh} px)")
    return x, y, x1 - x, y1 - y


def _area(ring: np.ndarray) -> float:
    """Shoelace area of a closed ring (positive for outer rings)."""
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
