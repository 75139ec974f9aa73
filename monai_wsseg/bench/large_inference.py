"""Whole-slide inference on a huge slide (100,000 × 100,000 px) in bounded memory: time and peak RSS.

This measures memory and stitching, not compute: the network is a tiny fully convolutional one (two
3 × 3 convolutions of stride 4, output stride 16, 149 parameters, :class:`TinyFCN`). Phases, each timed and
with its own peak resident memory (:class:`~monai_wsseg.bench.memory.MemoryMonitor`):

  1. tissue mask   — ``compute_tissue_mask`` on the slide at ``tissue_mpp`` (8 µm/px)
  2. inference     — ``WSIInferer`` (tile plan, DataLoader workers reading windows, network, ``AvgMerger``
                     stitching, ``finalize``) at ``mpp`` 0.5, tile 2048, halo 32, batch 2, 1 worker
  3. write map     — ``write_map_tiff`` of the probability map

Peak memory: ``getrusage(RUSAGE_SELF / RUSAGE_CHILDREN).ru_maxrss`` (main process / reaped DataLoader
workers), the kernel's VmHWM of the main process reset at each phase, and a background thread sampling VmRSS
of the main process and of its children, and their PSS. Sizes in MB (2**20 bytes), times in seconds,
throughputs in megapixels per second at the input resolution.

The slide is made with :func:`monai_wsseg.bench.large_slide.make_large_slide` when it does not exist.
``scripts/bench_large_slide.py`` is the command line.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from typing_extensions import override

from monai_wsseg.bench.large_slide import make_large_slide
from monai_wsseg.bench.memory import MemoryMonitor
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.io import write_map_tiff
from monai_wsseg.wsi.slide import open_slide
from monai_wsseg.wsi.tissue import compute_tissue_mask

__all__ = ["LIMIT_BYTES", "TinyFCN", "benchmark_report", "run_benchmark", "tissue_coverage"]

GIB = 2**30
MIB = 2**20
LIMIT_BYTES = 4 * GIB


class TinyFCN(nn.Module):
    """Output stride 16, 149 parameters: ``(B, 3, 16n, 16n)`` → ``(B, 1, n, n)`` logits."""

    stride = 16

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, stride=4, padding=1)
        )

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tissue_coverage(tissue, computed: np.ndarray, downsample: int) -> float:
    """Fraction of tissue-mask pixels whose centre lies on a computed map cell (1.0 = all tissue covered)."""
    mask = tissue.mask
    if not mask.any():
        return 1.0
    sx, sy = tissue.scale
    h, w = computed.shape
    rows = np.minimum(((np.arange(mask.shape[0]) + 0.5) * sy // downsample).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(mask.shape[1]) + 0.5) * sx // downsample).astype(np.intp), w - 1)
    covered = 0
    for r0 in range(0, mask.shape[0], 1024):  # row blocks keep the temporaries small
        block = computed[rows[r0 : r0 + 1024]][:, cols]
        covered += int((block & mask[r0 : r0 + 1024]).sum())
    return covered / int(mask.sum())


def _engine_estimates(plan, num_classes: int, slide_dims: tuple[int, int], tissue_shape: tuple[int, int]) -> dict:
    """What the engine allocates, from its own formulas (MB)."""
    map_w, map_h = plan.map_size
    padded = num_classes * (map_h + plan.tile_cells) * (map_w + plan.tile_cells)
    th, tw = tissue_shape
    return {
        "map_cells": map_w * map_h,
        "merger_padded_shape": [1, num_classes, map_h + plan.tile_cells, map_w + plan.tile_cells],
        "merger_values_mb": padded * 4 / MIB,
        "merger_counts_mb": padded * 4 / MIB,  # int32 counts (the budget formula in engine.py assumes uint8)
        "merger_budget_formula_mb": padded * 5 / MIB,
        "tissue_thumbnail_mb": th * tw * 3 / MIB,
        "tissue_sat_table_mb": (th + 1) * (tw + 1) * 8 / MIB,
        "window_mb": plan.window**2 * 3 / MIB,
    }


def run_benchmark(
    slide_path: str | os.PathLike,
    *,
    size: int = 100_000,
    height: int | None = None,
    tissue_fraction: float = 0.3,
    slide_mpp: float = 0.5,
    mpp: float = 0.5,
    tile: int = 2048,
    halo: int = 32,
    batch_size: int = 2,
    num_workers: int = 1,
    backend: str = "auto",
    tissue_mpp: float = 8.0,
    map_path: str | os.PathLike | None = None,
    delete_slide: bool = False,
    seed: int = 0,
    interval: float = 0.05,
    progress: bool = False,
) -> dict:
    """Make the slide if absent, run the phases, return every figure (see the module docstring)."""
    t_start = time.perf_counter()
    slide_path = Path(slide_path)
    result: dict = {"host": {"python": platform.python_version(), "torch": torch.__version__,
                             "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}}
    made = None
    if not slide_path.exists():
        made = make_large_slide(slide_path, size, height or size, mpp=slide_mpp, tissue_fraction=tissue_fraction,
                                seed=seed, progress=progress)
    net = TinyFCN(seed)
    inferer = WSIInferer(
        net, mpp=mpp, stride=TinyFCN.stride, tile=tile, halo=halo, num_classes=1, activation="sigmoid",
        batch_size=batch_size, num_workers=num_workers, device="cpu", tissue_mpp=tissue_mpp, progress=progress,
    )
    tmpdir = None
    if map_path is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="bench_large_")
        map_path = Path(tmpdir.name) / "map.tif"
    gc.collect()
    times: dict[str, float] = {}
    with MemoryMonitor(interval=interval) as mon:
        mon.start_phase("open")
        t0 = time.perf_counter()
        slide = open_slide(slide_path, backend=backend)
        times["open"] = time.perf_counter() - t0

        mon.start_phase("tissue_mask")
        t0 = time.perf_counter()
        tissue = compute_tissue_mask(slide, mpp=tissue_mpp)
        times["tissue_mask"] = time.perf_counter() - t0
        gc.collect()

        mon.start_phase("plan")
        t0 = time.perf_counter()
        plan = inferer.plan(slide, tissue)
        times["plan"] = time.perf_counter() - t0

        mon.start_phase("inference")
        t0 = time.perf_counter()
        smap = inferer(slide, tissue=tissue)
        times["inference"] = time.perf_counter() - t0

        mon.start_phase("write_map")
        t0 = time.perf_counter()
        write_map_tiff(map_path, smap)
        times["write_map"] = time.perf_counter() - t0

        mon.start_phase("check")
        computed = smap.computed
        coverage = tissue_coverage(tissue, computed, smap.downsample)
        computed_fraction = float(computed.mean())
        finite = bool(np.isfinite(smap.probabilities[:, computed]).all())
        del computed
    times["total"] = time.perf_counter() - t_start
    map_bytes = Path(map_path).stat().st_size

    self_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    overall = mon.overall()
    main_peak = max(self_maxrss, overall.get("main_hwm_mb", 0.0), overall.get("main_rss_mb", 0.0))
    workers_peak = max(child_maxrss, overall.get("workers_rss_mb", 0.0))

    w0, h0 = slide.dimensions
    area_in = (w0 * slide.mpp / plan.mpp) * (h0 * slide.mpp / plan.mpp)  # input pixels of the whole slide
    tissue_mpx = tissue.fraction * area_in / 1e6
    tile_mpx = len(plan) * tile**2 / 1e6
    read_mpx = len(plan) * plan.window**2 / 1e6
    result.update({
        "slide": {
            "path": str(slide_path), "width": w0, "height": h0, "mpp": slide.mpp, "levels": slide.level_count,
            "level_dimensions": [list(d) for d in slide.level_dimensions], "backend": slide.backend,
            "file_bytes": slide_path.stat().st_size, "made_here": made is not None,
            "make_seconds": made.seconds if made else None,
            "drawn_tissue_fraction": made.tissue_fraction if made else None,
        },
        "settings": {"mpp": mpp, "input_mpp": plan.mpp, "tile": tile, "halo": halo, "window": plan.window,
                     "stride": TinyFCN.stride, "batch_size": batch_size, "num_workers": num_workers,
                     "tissue_mpp": tissue_mpp, "network_parameters": sum(p.numel() for p in net.parameters())},
        "tissue_fraction_requested": tissue_fraction,
        "tissue_fraction": tissue.fraction,
        "tissue_mask_shape": list(tissue.shape),
        "tiles": len(plan),
        "tiles_possible": math.ceil(plan.map_size[0] / plan.tile_cells) * math.ceil(plan.map_size[1] / plan.tile_cells),
        "tissue_mpx": tissue_mpx,
        "tile_mpx": tile_mpx,
        "read_mpx": read_mpx,
        "seconds": times,
        "throughput_tissue_mpx_s": tissue_mpx / times["inference"],
        "throughput_tile_mpx_s": tile_mpx / times["inference"],
        "seconds_per_tile": times["inference"] / max(1, len(plan)),
        "map_shape": list(smap.probabilities.shape),
        "map_downsample": smap.downsample,
        "map_mpp": smap.mpp,
        "map_computed_fraction": computed_fraction,
        "map_finite_where_computed": finite,
        "tissue_covered": coverage,
        "unread_windows": len(smap.unread),
        "map_file_bytes": map_bytes,
        "engine_estimates": _engine_estimates(plan, 1, slide.dimensions, tissue.shape),
        "peak_rss_mb": {
            "main": main_peak,
            "workers": workers_peak,
            "main_ru_maxrss": self_maxrss,
            "workers_ru_maxrss": child_maxrss,
            "total_pss_sampled": overall.get("total_pss_mb"),
            "per_phase": mon.peaks,
            "hwm_reset_per_phase": mon.hwm_resets,
            "samples": mon.samples,
        },
        "peak_rss_below_4gib": bool(main_peak * MIB < LIMIT_BYTES and workers_peak * MIB < LIMIT_BYTES),
        "peak_total_pss_below_4gib": bool((overall.get("total_pss_mb") or 0) * MIB < LIMIT_BYTES),
    })
    slide.close()
    del smap, tissue
    if tmpdir is not None:
        tmpdir.cleanup()
    if delete_slide:
        slide_path.unlink(missing_ok=True)
        result["slide"]["deleted"] = True
    return result


def benchmark_report(r: dict) -> str:
    """The figures of :func:`run_benchmark` as a few lines of text."""
    s, p, t = r["slide"], r["peak_rss_mb"], r["seconds"]
    lines = [
        f"slide           {s['width']} x {s['height']} px @ {s['mpp']} um/px, {s['levels']} levels, "
        f"{s['file_bytes'] / GIB:.2f} GiB, backend {s['backend']}"
        + (f", written in {s['make_seconds']:.1f} s" if s["make_seconds"] else ""),
        f"tissue          {r['tissue_fraction']:.3f} of the slide (requested {r['tissue_fraction_requested']}), "
        f"{r['tissue_mpx']:.0f} Mpx at {r['settings']['input_mpp']} um/px",
        f"tiles           {r['tiles']} of {r['tiles_possible']} ({r['settings']['window']} px windows)",
        f"time            tissue mask {t['tissue_mask']:.1f} s, inference {t['inference']:.1f} s, "
        f"write map {t['write_map']:.1f} s, total {t['total']:.1f} s",
        f"throughput      {r['throughput_tissue_mpx_s']:.1f} Mpx/s of tissue, "
        f"{r['throughput_tile_mpx_s']:.1f} Mpx/s of tiles ({r['seconds_per_tile']:.3f} s/tile)",
        f"map             {r['map_shape']} at downsample {r['map_downsample']}, "
        f"computed {r['map_computed_fraction']:.3f}, tissue covered {r['tissue_covered']:.4f}",
        f"peak RSS        main {p['main']:.0f} MB, workers {p['workers']:.0f} MB, "
        f"total PSS {p['total_pss_sampled'] or float('nan'):.0f} MB -> below 4 GiB: {r['peak_rss_below_4gib']}",
    ]
    for phase, e in p["per_phase"].items():
        lines.append(f"  {phase:<14}" + ", ".join(f"{k} {v:.0f}" for k, v in e.items()))
    return "\n".join(lines)
