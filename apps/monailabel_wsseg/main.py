r"""MONAI Label app serving the two monai-wsseg bundles on a folder of whole-slide images.

Start it from the MONAI Label environment (``scripts/setup_monailabel.sh`` builds ``.venv-label``)::

    .venv-label/bin/python -m monailabel.main start_server --app apps/monailabel_wsseg --studies demo/cohort/slides \
        --conf mil_model bundles/mil_tumor_segmentation/runs/latest/models/model.pt \
        --conf mil_configs inference.json,cpu.json

Options (``--conf KEY VALUE``):

* ``models`` — ``all`` (default: every bundle whose weights exist) or a comma list of
  ``mil_tumor_segmentation``, ``wsss_tissue_segmentation``.
* ``mil_model`` — MIL weights (default ``bundles/mil_tumor_segmentation/runs/latest/models/model.pt``).
* ``wsss_segmenter``, ``wsss_classifier`` — WSSS weights (default ``.../runs/latest/models/{model,classifier}.pt``).
* ``mil_configs``, ``wsss_configs`` — comma list of bundle config files (default ``inference.json``; add the
  profile the weights were trained with, e.g. ``inference.json,cpu.json`` or ``inference.json,cpu_seg.json``).
* ``device`` — ``cpu``, ``cuda``, ``cuda:1`` … (default: ``cuda`` when available).
* ``slide_mpp`` — level-0 µm/px of slides whose files record none.
* ``bundles_dir`` — where the bundles are (default: the project's ``bundles/``).

A WSI request (``POST /infer/wsi_v2/<model>?image=<id>``, as QuPath and DSA send) is split into tiles on the
bundle's own tile grid; every tile returns the polygons of its map cells, and MONAI Label gathers them into
its ASAP/DSA/JSON answer. Nothing is downloaded: only the bundles' weights named here are loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from fastapi import HTTPException
from lib.infers import BundleRegionInfer, BundleSpec, region_box
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from typing_extensions import override

from monai_wsseg.datasets.discovery import SLIDE_EXTENSIONS
from monai_wsseg.wsi.slide import open_slide

logger = logging.getLogger(__name__)
T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIL, WSSS = "mil_tumor_segmentation", "wsss_tissue_segmentation"


class WSSegApp(MONAILabelApp):
    """The monai-wsseg bundles as MONAI Label models (see the module docstring for the options)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.specs = bundle_specs(conf)
        self.device = conf.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.slide_mpp = float(conf["slide_mpp"]) if conf.get("slide_mpp") else None
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monai-wsseg",
            description="Weakly supervised whole-slide segmentation: MIL tumor maps and WSSS tissue classes",
            version="0.1.0",
        )

    @override
    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        return LocalDatastore(
            self.studies,
            extensions=[f"*{ext}" for ext in SLIDE_EXTENSIONS],
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    @override
    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for spec in self.specs:
            infers[spec.name] = BundleRegionInfer(spec, self.device, self.slide_mpp)
            logger.info("serving %s on %s from %s", spec.name, self.device, [str(p) for p in spec.weights.values()])
        return infers

    @override
    def infer(self, request: dict, datastore: Datastore | None = None) -> dict:
        _, image = self._task_and_image(request, datastore)
        return self._explained(lambda: super(WSSegApp, self).infer(request, datastore), request, image)

    @override
    def infer_wsi(self, request: dict, datastore: Datastore | None = None) -> dict:
        task, image = self._task_and_image(request, datastore)

        def run() -> dict:
            tiled = request
            if image and isinstance(task, BundleRegionInfer) and not request.get("wsi_tiles"):
                tiles = task.tiles(image, request.get("location"), request.get("size"),
                                   request.get("tile_size") or (1024, 1024))
                tiled = dict(request, wsi_tiles=tiles)
            return super(WSSegApp, self).infer_wsi(tiled, datastore)

        return self._explained(run, request, image)

    @staticmethod
    def _explained(run: Callable[[], T], request: dict, image: str | None) -> T:
        """``run()``, with any failure (an unreadable slide, a failing network) answered as a 500 that says
        what failed, instead of MONAI Label's bare "Internal Server Error"."""
        try:
            return run()
        except HTTPException:
            raise
        except Exception as exc:
            logger.exception("%s on %s failed", request.get("model"), image)
            raise HTTPException(status_code=500, detail=f"{request.get('model')} on {image}: "
                                                        f"{type(exc).__name__}: {exc}") from None

    def _task_and_image(self, request: dict, datastore: Datastore | None) -> tuple[InferTask, str | None]:
        """The request's task and slide path; a clear HTTP error for an unknown model or image."""
        model = request.get("model")
        task = self._infers.get(model)
        if task is None:
            raise HTTPException(status_code=404, detail=f"model {model!r} is not served here; models: "
                                                        f"{sorted(self._infers)}")
        image = request.get("image")
        if not isinstance(image, str):
            return task, None
        if os.path.exists(image):
            return task, image
        uri = (datastore or self.datastore()).get_image_uri(image)
        if not uri:
            known = sorted((datastore or self.datastore()).list_images())
            shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
            raise HTTPException(status_code=404, detail=f"image {image!r} is not in the studies folder {self.studies} "
                                                        f"({len(known)} slides: {shown})")
        if not request.get("location") and not request.get("size"):
            return task, uri

        def check_region() -> None:  # a region outside the slide is the client's error (400), not the server's
            with open_slide(uri, mpp=self.slide_mpp) as slide:
                try:
                    region_box(slide, request.get("location"), request.get("size"))
                except ValueError as exc:
                    raise HTTPException(status_code=400, detail=str(exc)) from None

        self._explained(check_region, request, uri)
        return task, uri


def bundle_specs(conf: dict[str, str], bundles_dir: Path | None = None) -> list[BundleSpec]:
    """The bundles to serve, from the ``--conf`` options (see the module docstring).

    Raises:
        ValueError: an unknown model name, a weights file named (or needed by a named model) that does not
            exist, or no bundle with weights at all; each message says which option to pass.
    """
    root = Path(conf.get("bundles_dir") or bundles_dir or PROJECT_ROOT / "bundles").resolve()
    models = [m.strip() for m in conf.get("models", "all").split(",") if m.strip()]
    unknown = sorted(set(models) - {"all", MIL, WSSS})
    if unknown:
        raise ValueError(f"--conf models: unknown model(s) {unknown}; choose from {MIL}, {WSSS} or all")
    runs = {b: root / b / "runs" / "latest" / "models" for b in (MIL, WSSS)}
    candidates: dict[str, dict[str, tuple[str, Path]]] = {
        MIL: {"ckpt_path": ("mil_model", runs[MIL] / "model.pt")},
        WSSS: {"segmenter_path": ("wsss_segmenter", runs[WSSS] / "model.pt"),
               "classifier_path": ("wsss_classifier", runs[WSSS] / "classifier.pt")},
    }
    descriptions = {MIL: "MIL tumor probability from slide labels (tumor regions)",
                    WSSS: "Tissue classes TE/NEC/LYM/TAS from patch labels (WSSS)"}
    specs = []
    for name, keys in candidates.items():
        weights = {key: Path(conf.get(option) or default).expanduser().resolve()
                   for key, (option, default) in keys.items()}
        named = any(conf.get(option) for option, _ in keys.values()) or name in models
        missing = [f"--conf {keys[k][0]} ({p})" for k, p in weights.items() if not p.is_file()]
        if missing:
            if named:
                raise ValueError(f"model {name}: weights not found: {', '.join(missing)}")
            logger.warning("%s: not served, weights not found: %s", name, ", ".join(missing))
            continue
        if "all" not in models and name not in models:
            continue
        prefix = "mil" if name == MIL else "wsss"
        files = tuple(f.strip() for f in conf.get(f"{prefix}_configs", "inference.json").split(",") if f.strip())
        specs.append(BundleSpec(name, root / name, files, weights, descriptions[name]))
    if not specs:
        raise ValueError(f"no bundle weights found under {root}: pass --conf mil_model PATH and/or "
                         "--conf wsss_segmenter PATH --conf wsss_classifier PATH")
    return specs
