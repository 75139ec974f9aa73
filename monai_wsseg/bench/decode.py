"""How fast one CPU core decodes a slide's tiles, per codec and backend, and how many cores a GPU then needs.

On the same tile-aligned tiles of one JPEG-tiled slide, single-threaded:

* ``openslide`` — ``Slide.read_level`` through OpenSlide (libjpeg-turbo, with its own tile cache bypassed by
  reading each tile once);
* ``tifffile`` — the same through the project's tifffile reader (imagecodecs' libjpeg-turbo);
* ``torchvision_cpu`` — :class:`~monai_wsseg.wsi.jpeg_tiles.JpegTiles`: the compressed tiles read as bytes and
  decoded in one batch by ``torchvision.io.decode_jpeg`` (the path that runs on the GPU with ``device="cuda"``);
* ``jpeg2000`` — the same tiles re-encoded as JPEG 2000 (imagecodecs/OpenJPEG, as in Aperio's J2K SVS and
  many DICOM archives) and decoded.

``cores_per_gpu[codec] = model_mpx_s / mpx_s`` is how many decoding cores keep a network that consumes
``model_mpx_s`` (default 283: ResNet50 FCN, fp16, measured on an H200 by ``bench_inference.py``) busy.
``scripts/bench_decode.py`` is the command line.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from monai_wsseg.wsi.jpeg_tiles import JpegTiles
from monai_wsseg.wsi.slide import open_slide

__all__ = ["H200_RESNET50_MPX_S", "decode_rates"]

#: ResNet50 FCN model-only throughput on an H200 (fp16, tile 1024), Mpx/s, from ``bench_inference.py``.
H200_RESNET50_MPX_S = 283.0


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decode_rates(slide_path: str, *, tiles: int = 48, level: int = 0, model_mpx_s: float = H200_RESNET50_MPX_S,
                 jpeg2000_quality: int = 40) -> dict[str, Any]:
    """Single-core decode throughput (Mpx/s) of ``tiles`` tiles of one level through each path (module doc)."""
    import imagecodecs

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        jt = JpegTiles(slide_path, level)
        rows, cols = jt.grid
        picks = np.linspace(0, rows * cols - 1, min(tiles, rows * cols)).astype(int)
        grid = [(int(i) // cols, int(i) % cols) for i in picks]
        th, tw = jt.tile
        mpx = len(grid) * th * tw / 1e6
        out: dict[str, Any] = {"slide": str(slide_path), "level": level, "tile": [th, tw], "tiles": len(grid)}
        rates: dict[str, float] = {}
        for backend in ("openslide", "tifffile"):
            try:
                slide = open_slide(slide_path, backend=backend)
            except Exception as exc:  # a backend not installed is reported, not fatal
                out[f"{backend}_skipped"] = str(exc).splitlines()[0]
                continue
            ds = slide.level_downsamples[level][0]
            with slide:
                seconds = _timed(lambda s=slide, d=ds: [
                    s.read_level((int(c * tw * d), int(r * th * d)), (tw, th), level) for r, c in grid])
            rates[backend] = mpx / seconds
        rates["torchvision_cpu"] = mpx / _timed(lambda: jt.decode(grid))
        pixels = [t.permute(1, 2, 0).numpy() for t in jt.decode(grid)]
        j2k = [imagecodecs.jpeg2k_encode(p, level=jpeg2000_quality, numthreads=1) for p in pixels]
        rates["jpeg2000"] = mpx / _timed(lambda: [imagecodecs.jpeg2k_decode(b, numthreads=1) for b in j2k])
        out["jpeg_bytes_per_px"] = float(sum(len(jt.stream(r, c)) for r, c in grid) / (mpx * 1e6))
        out["jpeg2000_bytes_per_px"] = float(sum(len(b) for b in j2k) / (mpx * 1e6))
    finally:
        torch.set_num_threads(previous)
    out["mpx_s_per_core"] = rates
    out["model_mpx_s"] = model_mpx_s
    out["cores_per_gpu"] = {k: model_mpx_s / v for k, v in rates.items()}
    return out
