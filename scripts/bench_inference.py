"""Benchmark whole-slide inference on one slide and print ratios, not just times.

Figures (throughputs in megapixels per second of kept tile area at the input resolution):

  (a) model only    — the network on windows already in memory (same window size, batch, device)
  (b) read only     — the DataLoader reading and decoding the same windows, no network
  (c) end to end    — ``WSIInferer`` on the slide (tissue mask, reading, network, stitching); ratio (c)/(a)
  (d) peak memory   — peak resident memory of this process and of its DataLoader workers
  (e) FCN on large tiles vs the same network on 224 px patches with 50 % overlap (time ratio, map agreement)
  (f) the pipeline a MONAI user picks today (model-zoo tumor detection: ``MaskedPatchWSIDataset`` →
      DataLoader → ``TorchVisionFCModel``, one 224 px patch per output cell), timed on a sample of its
      patches and extrapolated to all of them (it would take an hour on a CPU); time ratio peer ÷ ours

Usage::

    python scripts/bench_inference.py --slide SLIDE [--device cpu|cuda] [--backbone resnet50] --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monai_wsseg.inference.engine import WSIInferer, _Windows  # noqa: E402
from monai_wsseg.networks.fcn import ResNetFCN  # noqa: E402
from monai_wsseg.wsi.slide import open_slide  # noqa: E402
from monai_wsseg.wsi.tissue import compute_tissue_mask  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_only(inferer: WSIInferer, windows: list[torch.Tensor], repeats: int) -> float:
    """Seconds per window for the network alone on in-memory uint8 windows (warm-up excluded)."""
    net, bs = inferer.network.eval(), inferer.batch_size
    batches = [torch.stack(windows[i : i + bs]) for i in range(0, len(windows), bs)]
    with torch.no_grad(), torch.autocast(inferer.device.type, dtype=torch.float16, enabled=inferer.amp):
        net(inferer.preprocess(batches[0]))
        _sync(inferer.device)
        start = time.perf_counter()
        for _ in range(repeats):
            for b in batches:
                net(inferer.preprocess(b))
        _sync(inferer.device)
    return (time.perf_counter() - start) / (repeats * len(windows))


def read_only(inferer: WSIInferer, slide, plan) -> float:
    """Seconds per window for reading and decoding through the same DataLoader, no network."""
    loader = DataLoader(_Windows(slide, plan), batch_size=inferer.batch_size, num_workers=inferer.num_workers,
                        prefetch_factor=4 if inferer.num_workers else None)
    start = time.perf_counter()
    for _ in loader:
        pass
    return (time.perf_counter() - start) / len(plan)


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    both = ~np.isnan(a) & ~np.isnan(b)
    x, y = a[both], b[both]
    return {
        "cells_compared": int(both.sum()),
        "pearson_r": float(np.corrcoef(x, y)[0, 1]) if x.size > 1 and x.std() > 0 and y.std() > 0 else float("nan"),
        "mean_abs_diff": float(np.abs(x - y).mean()) if x.size else float("nan"),
    }


def peer(args, slide, device: torch.device, cell_px: int) -> dict:
    """The model-zoo pipeline at the same output resolution, timed on a sample and extrapolated."""
    from monai.data import MaskedPatchWSIDataset
    from monai.networks.nets import TorchVisionFCModel

    in_level = slide.level_for_mpp(args.mpp)
    target = slide.level_downsamples[in_level][0] * cell_px
    levels = [i for i, (dx, _) in enumerate(slide.level_downsamples) if abs(dx - target) / target < 0.02]
    if not levels:
        return {"skipped": f"the slide has no level at downsample {target:g} for the peer's tissue mask"}
    reader = "OpenSlide" if "openslide" in args.peer_reader.lower() else args.peer_reader
    start = time.perf_counter()
    ds = MaskedPatchWSIDataset([{"image": str(slide.path)}], patch_size=224, patch_level=in_level,
                               mask_level=levels[0], reader=reader)
    setup = time.perf_counter() - start
    n_total = len(ds)
    n = min(args.peer_patches, n_total)
    subset = torch.utils.data.Subset(ds, np.linspace(0, n_total - 1, n).astype(int).tolist())

    def collate(items):
        return torch.stack([torch.as_tensor(np.asarray(it["image"])) for it in items])

    loader = DataLoader(subset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate)
    net = TorchVisionFCModel(args.backbone, num_classes=1, use_conv=True, pretrained=False).to(device).eval()
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slide", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--stride", type=int, default=16, choices=(16, 32))
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--halo", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--model-windows", type=int, default=6, help="windows kept in memory for (a)")
    p.add_argument("--peer-patches", type=int, default=64, help="patches timed for (f); 0 skips it")
    p.add_argument("--peer-reader", default="openslide")
    p.add_argument("--skip-patch-mode", action="store_true", help="skip (e)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(0)
    slide = open_slide(args.slide)
    net = ResNetFCN(args.backbone, num_classes=1, output_stride=args.stride).to(device).eval()
    inferer = WSIInferer(net, mpp=args.mpp, stride=args.stride, tile=args.tile, halo=args.halo,
                         batch_size=args.batch_size, num_workers=args.workers, device=device, progress=False)
    tissue = compute_tissue_mask(slide)
    plan = inferer.plan(slide, tissue)
    if not len(plan):
        raise SystemExit(f"{slide.path}: no tissue, nothing to benchmark")
    mpx_per_window = args.tile**2 / 1e6
    out: dict = {
        "slide": str(slide.path), "slide_size": slide.dimensions, "slide_mpp": slide.mpp,
        "device": str(device), "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "backbone": args.backbone, "stride": args.stride,
        "tile": args.tile, "halo": args.halo, "batch_size": args.batch_size, "workers": args.workers,
        "tiles": len(plan), "tissue_fraction": tissue.fraction, "kept_megapixels": len(plan) * mpx_per_window,
    }

    ds = _Windows(slide, plan)
    windows = [ds[i][0] for i in range(min(args.model_windows, len(plan)))]
    out["a_model_mpx_s"] = mpx_per_window / model_only(inferer, windows, repeats=1)
    out["b_read_mpx_s"] = mpx_per_window / read_only(inferer, slide, plan)
    start = time.perf_counter()
    smap = inferer(slide, tissue=tissue)
    out["c_end_to_end_s"] = time.perf_counter() - start
    out["c_end_to_end_mpx_s"] = out["kept_megapixels"] / out["c_end_to_end_s"]
    out["ratio_c_over_a"] = out["c_end_to_end_mpx_s"] / out["a_model_mpx_s"]
    out["map_size"] = smap.probabilities.shape[1:]

    if not args.skip_patch_mode:
        patch = WSIInferer(net, mpp=args.mpp, stride=args.stride, tile=224, halo=0, overlap=0.5,
                           batch_size=max(args.batch_size, 8), num_workers=args.workers, device=device, progress=False)
        start = time.perf_counter()
        pmap = patch(slide, tissue=tissue)
        out["e_patch_mode_s"] = time.perf_counter() - start
        out["e_time_ratio_patch_over_fcn"] = out["e_patch_mode_s"] / out["c_end_to_end_s"]
        out["e_agreement"] = agreement(smap.probabilities[0], pmap.probabilities[0])

    if args.peer_patches > 0:
        out["f_peer"] = peer(args, slide, device, cell_px=args.stride)
        if "seconds_extrapolated" in out["f_peer"]:
            out["f_time_ratio_peer_over_ours"] = out["f_peer"]["seconds_extrapolated"] / out["c_end_to_end_s"]

    out["d_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["d_peak_rss_workers_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if device.type == "cuda":
        out["d_peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20

    for key, value in out.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"{key:32s} {shown}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
    return out


if __name__ == "__main__":
    main()
