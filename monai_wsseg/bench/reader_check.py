"""Do the slide backends return the same pixels? Random regions of one slide read through each backend.

Every backend is compared with the first one (OpenSlide by default) on the same regions at the same mpp:
largest and mean absolute difference per channel value (0–255), and each backend's read throughput.
Tile-aligned reads of a slide's stored levels decode the same JPEG tiles, so differences come only from the
JPEG decoders (libjpeg-turbo in OpenSlide and imagecodecs, nvJPEG in cuCIM on a GPU).

Command line: ``python -m monai_wsseg.bench.reader_check --slide S [--backends openslide tifffile cucim]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from monai_wsseg.utils.cli import write_json
from monai_wsseg.wsi.slide import open_slide

__all__ = ["compare_backends", "main"]


def compare_backends(slide_path: str, backends: Sequence[str] = ("openslide", "tifffile"), *, regions: int = 20,
                     size: int = 512, mpp: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Read ``regions`` random ``size``² regions at ``mpp`` (default: level 0) through each backend.

    Returns:
        ``{"regions", "size", "mpp", "backends": {name: {"mpx_s", "max_abs_diff", "mean_abs_diff"} or
        {"skipped": reason}}}``; differences are against the first backend that could open the slide.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"slide": str(slide_path), "regions": regions, "size": size, "backends": {}}
    reference: list[np.ndarray] | None = None
    boxes: list[tuple[int, int]] = []
    for name in backends:
        try:
            slide = open_slide(slide_path, backend=name)
        except Exception as exc:  # a backend missing here (cuCIM without a GPU) is reported, not fatal
            out["backends"][name] = {"skipped": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
            continue
        with slide:
            level_mpp = mpp or slide.mpp
            out["mpp"] = level_mpp
            if not boxes:
                w, h = slide.dimensions
                reach = int(size * level_mpp / slide.mpp)
                boxes = [(int(rng.integers(0, max(1, w - reach))), int(rng.integers(0, max(1, h - reach))))
                         for _ in range(regions)]
            start = time.perf_counter()
            reads = [slide.read_region(xy, (size, size), level_mpp) for xy in boxes]
            seconds = time.perf_counter() - start
        entry: dict[str, Any] = {"mpx_s": regions * size * size / 1e6 / seconds}
        if reference is None:
            reference = reads
            entry["reference"] = True
        else:
            diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(reads, reference, strict=True)]
            entry["max_abs_diff"] = int(max(d.max() for d in diffs))
            entry["mean_abs_diff"] = float(np.mean([d.mean() for d in diffs]))
        out["backends"][name] = entry
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Print the comparison as JSON (and write it to ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slide", required=True)
    p.add_argument("--backends", nargs="+", default=["openslide", "tifffile", "cucim"])
    p.add_argument("--regions", type=int, default=20)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--mpp", type=float, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    out = compare_backends(args.slide, args.backends, regions=args.regions, size=args.size, mpp=args.mpp)
    print(json.dumps(out, indent=2))
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
