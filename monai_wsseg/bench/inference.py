"""Benchmark whole-slide inference on one slide, as ratios, not just times.

Figures (throughputs in megapixels per second of kept tile area at the input resolution; times in seconds;
memory in MB):

  (a) model only    — the network on windows already in memory (same window size, batch, device)
  (b) read only     — the DataLoader reading and decoding the same windows, no network
  (c) end to end    — ``WSIInferer`` on the slide (tissue mask, reading, network, stitching); ratio (c)/(a)
  (d) peak memory   — peak resident memory of this process and of its DataLoader workers
  (e) FCN on large tiles vs the same network on 224 px patches with 50 % overlap (time ratio, map agreement)
  (g) fast path     — (a) at the chosen precision (bf16 + channels-last on a bf16 CPU) ÷ (a) in fp32 eager on the
      same windows (``g_fast_speedup``), and the largest |Δ probability| between the two (``g_fast_max_abs_diff``)
  (f) the pipeline a MONAI user picks today (model-zoo tumor detection: ``MaskedPatchWSIDataset`` →
      DataLoader → ``TorchVisionFCModel``, one 224 px patch per output cell), timed on a sample of its
      patches and extrapolated to all of them (it would take an hour on a CPU); time ratio peer ÷ ours

``scripts/bench_inference.py`` is the command line.
"""

from __future__ import annotations

import copy
import os
import platform
import resource
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

# The engine's own window dataset: (b) must read exactly as inference does.
from monai_wsseg.inference.engine import TileWindows, WSIInferer
from monai_wsseg.networks.checkpoint import load_weights
from monai_wsseg.networks.fcn import ResNetFCN
from monai_wsseg.utils.precision import resolve_precision
from monai_wsseg.wsi.slide import Slide, open_slide
from monai_wsseg.wsi.tissue import compute_tissue_mask

__all__ = ["agreement", "fast_path", "model_only", "peer_pipeline", "read_only", "run_inference_benchmark"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_only(inferer: WSIInferer, windows: list[torch.Tensor], repeats: int,
               outputs: list[torch.Tensor] | None = None) -> float:
    """Seconds per window for the network alone on in-memory ``(3, S, S)`` uint8 windows (warm-up excluded),
    at the inferer's precision; the fp32 logits of the last repeat are appended to ``outputs`` when given."""
    net, bs, precision = inferer.network.eval(), inferer.batch_size, inferer.precision
    batches = [torch.stack(windows[i : i + bs]).to(inferer.device) for i in range(0, len(windows), bs)]
    with torch.no_grad(), precision.autocast():
        net(precision.inputs(inferer.preprocess(batches[0])))
        _sync(inferer.device)
        start = time.perf_counter()
        for r in range(repeats):
            for b in batches:
                logits = net(precision.inputs(inferer.preprocess(b)))
                if outputs is not None and r == repeats - 1:
                    outputs.append(logits.float().cpu())
        _sync(inferer.device)
    return (time.perf_counter() - start) / (repeats * len(windows))


def fast_path(inferer: WSIInferer, windows: list[torch.Tensor], fast_s: float, repeats: int) -> dict[str, Any]:
    """(g): the inferer's precision against fp32 eager (contiguous memory, no autocast) on the same windows:
    speed-up of the network alone, and the largest and mean |Δ probability| of its sigmoid outputs."""
    fast: list[torch.Tensor] = []
    # Outputs come from a pass of their own: ``fast_s`` (figure (a)) was timed without device-to-host copies.
    model_only(inferer, windows, 1, fast)
    reference = copy.copy(inferer)
    reference.precision = resolve_precision("fp32", inferer.device)
    slow: list[torch.Tensor] = []
    fp32_s = model_only(reference, windows, repeats, slow)
    diff = torch.cat([(torch.sigmoid(a) - torch.sigmoid(b)).abs().flatten() for a, b in zip(fast, slow, strict=True)])
    return {"g_precision": inferer.precision.name, "g_fast_speedup": fp32_s / fast_s,
            "g_fast_max_abs_diff": float(diff.max()), "g_fast_mean_abs_diff": float(diff.mean())}


def read_only(inferer: WSIInferer, slide: Slide, plan: Any) -> float:
    """Seconds per window for reading and decoding through the same DataLoader, no network."""
    loader = DataLoader(TileWindows(slide, plan), batch_size=inferer.batch_size, num_workers=inferer.num_workers,
                        prefetch_factor=4 if inferer.num_workers else None)
    start = time.perf_counter()
    for _ in loader:
        pass
    return (time.perf_counter() - start) / len(plan)


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float | int]:
    """How two maps of one shape agree where both are defined (not NaN): cells compared, Pearson r, mean |a - b|."""
    both = ~np.isnan(a) & ~np.isnan(b)
    x, y = a[both], b[both]
    return {
        "cells_compared": int(both.sum()),
        "pearson_r": float(np.corrcoef(x, y)[0, 1]) if x.size > 1 and x.std() > 0 and y.std() > 0 else float("nan"),
        "mean_abs_diff": float(np.abs(x - y).mean()) if x.size else float("nan"),
    }


def peer_pipeline(slide: Slide, device: torch.device, cell_px: int, *, mpp: float, backbone: str, batch_size: int,
                  workers: int, patches: int, reader: str) -> dict[str, Any]:
    """The model-zoo pipeline at the same output resolution (one 224 px patch per ``cell_px`` cell), timed on
    ``patches`` patches and extrapolated to all of them."""
    from monai.data import MaskedPatchWSIDataset
    from monai.networks.nets import TorchVisionFCModel

    in_level = slide.level_for_mpp(mpp)
    target = slide.level_downsamples[in_level][0] * cell_px
    levels = [i for i, (dx, _) in enumerate(slide.level_downsamples) if abs(dx - target) / target < 0.02]
    if not levels:
        return {"skipped": f"the slide has no level at downsample {target:g} for the peer's tissue mask"}
    reader = "OpenSlide" if "openslide" in reader.lower() else reader
    start = time.perf_counter()
    ds = MaskedPatchWSIDataset([{"image": str(slide.path)}], patch_size=224, patch_level=in_level,
                               mask_level=levels[0], reader=reader)
    setup = time.perf_counter() - start
    n_total = len(ds)
    n = min(patches, n_total)
    subset = torch.utils.data.Subset(ds, np.linspace(0, n_total - 1, n).astype(int).tolist())

    def collate(items):
        return torch.stack([torch.as_tensor(np.asarray(it["image"])) for it in items])

    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    net = TorchVisionFCModel(backbone, num_classes=1, use_conv=True, pretrained=False).to(device).eval()
    mean = torch.tensor([0.5, 0.5, 0.5], device=device).view(1, 3, 1, 1)
    with torch.no_grad():
        net(torch.zeros(1, 3, 224, 224, device=device))  # warm-up
        start = time.perf_counter()
        for batch in loader:
            x = (batch.to(device).float() / 255 - mean) / 0.5
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                net(x)
        _sync(device)
        per_patch = (time.perf_counter() - start) / n
    return {"patches_total": n_total, "patches_timed": n, "seconds_per_patch": per_patch,
            "mask_seconds": setup, "seconds_extrapolated": setup + per_patch * n_total}


def run_inference_benchmark(slide_path: str | os.PathLike, *, device: str = "cpu", backbone: str = "resnet50",
                            mpp: float = 0.5, stride: int = 16, tile: int = 1024, halo: int = 128,
                            batch_size: int = 2, workers: int = 1, model_windows: int = 6, peer_patches: int = 64,
                            peer_reader: str = "openslide", patch_mode: bool = True, precision: str = "auto",
                            ckpt: str | os.PathLike | None = None, fast_path_check: bool = True,
                            decode: str = "workers") -> dict[str, Any]:
    """Figures (a)–(g) of the module docstring on one slide, with a ``ResNetFCN`` (randomly initialised, or the
    weights of ``ckpt``) at ``precision`` (:mod:`monai_wsseg.utils.precision`).

    Args:
        fast_path_check: run (g) (the network alone at ``precision`` against fp32 eager).
        model_windows: windows kept in memory for (a).
        peer_patches: patches timed for (f); 0 skips it.
        patch_mode: run (e).
        decode: the inferer's ``decode`` for (c): ``"workers"`` or ``"device"`` (JPEG tiles decoded on the device).

    Raises:
        ValueError: the slide has no tissue (nothing to benchmark).
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    slide = open_slide(slide_path)
    net = ResNetFCN(backbone, num_classes=1, output_stride=stride)
    if ckpt is not None:
        load_weights(net, ckpt)
    net = net.to(dev).eval()
    inferer = WSIInferer(net, mpp=mpp, stride=stride, tile=tile, halo=halo, batch_size=batch_size,
                         num_workers=workers, device=dev, progress=False, precision=precision, decode=decode)
    tissue = compute_tissue_mask(slide)
    plan = inferer.plan(slide, tissue)
    if not len(plan):
        raise ValueError(f"{slide.path}: no tissue, nothing to benchmark")
    mpx_per_window = tile**2 / 1e6
    processor = torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or platform.machine()
    out: dict[str, Any] = {
        "slide": str(slide.path), "slide_size": slide.dimensions, "slide_mpp": slide.mpp,
        "device": str(dev), "device_name": processor, "torch_threads": torch.get_num_threads(), "backbone": backbone,
        "stride": stride, "tile": tile, "halo": halo, "batch_size": batch_size, "workers": workers, "decode": decode,
        "precision": inferer.precision.as_dict(), "weights": str(ckpt) if ckpt else "random",
        "tiles": len(plan), "tissue_fraction": tissue.fraction, "kept_megapixels": len(plan) * mpx_per_window,
    }

    ds = TileWindows(slide, plan)
    windows = [ds[i][0] for i in range(min(model_windows, len(plan)))]
    fast_s = model_only(inferer, windows, repeats=1)
    out["a_model_mpx_s"] = mpx_per_window / fast_s
    if fast_path_check:
        out.update(fast_path(inferer, windows, fast_s, repeats=1))
        out["g_fp32_model_mpx_s"] = out["a_model_mpx_s"] / out["g_fast_speedup"]
    out["b_read_mpx_s"] = mpx_per_window / read_only(inferer, slide, plan)
    start = time.perf_counter()
    smap = inferer(slide, tissue=tissue)
    out["c_end_to_end_s"] = time.perf_counter() - start
    out["c_end_to_end_mpx_s"] = out["kept_megapixels"] / out["c_end_to_end_s"]
    out["ratio_c_over_a"] = out["c_end_to_end_mpx_s"] / out["a_model_mpx_s"]
    out["map_size"] = smap.probabilities.shape[1:]

    if patch_mode:
        patch = WSIInferer(net, mpp=mpp, stride=stride, tile=224, halo=0, overlap=0.5, batch_size=max(batch_size, 8),
                           num_workers=workers, device=dev, progress=False)
        start = time.perf_counter()
        pmap = patch(slide, tissue=tissue)
        out["e_patch_mode_s"] = time.perf_counter() - start
        out["e_time_ratio_patch_over_fcn"] = out["e_patch_mode_s"] / out["c_end_to_end_s"]
        out["e_agreement"] = agreement(smap.probabilities[0], pmap.probabilities[0])

    if peer_patches > 0:
        out["f_peer"] = peer_pipeline(slide, dev, cell_px=stride, mpp=mpp, backbone=backbone, batch_size=batch_size,
                                      workers=workers, patches=peer_patches, reader=peer_reader)
        if "seconds_extrapolated" in out["f_peer"]:
            out["f_time_ratio_peer_over_ours"] = out["f_peer"]["seconds_extrapolated"] / out["c_end_to_end_s"]

    out["d_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["d_peak_rss_workers_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if dev.type == "cuda":
        out["d_peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out
