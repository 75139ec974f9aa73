"""The table ``scripts/gpu_check.sh`` ends with: one row per figure, read from the JSON its steps wrote.

``python -m monai_wsseg.bench.gpu_report FOLDER`` reads ``FOLDER/{inference,inference_nvjpeg,large,readers,train_mil,
train_wsss,ddp}.json`` and ``FOLDER/steps.tsv`` (step, exit status, seconds), prints a Markdown table for
the bundle docs and writes everything, with the machine, to ``FOLDER/gpu_check.json``. A step that failed
or was skipped shows as such; the table is printed whatever happened.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ROWS", "machine", "main", "report"]


def _get(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _num(fmt: str) -> Callable[[Any], str]:
    return lambda v: format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


#: (figure, JSON file, key path, format): what the table shows.
ROWS: tuple[tuple[str, str, str, Callable[[Any], str]], ...] = (
    ("ResNet50 FCN model only, Mpx/s", "inference", "a_model_mpx_s", _num(".1f")),
    ("ResNet50 FCN end to end, Mpx/s", "inference", "c_end_to_end_mpx_s", _num(".1f")),
    ("end to end ÷ model only", "inference", "ratio_c_over_a", _num(".3f")),
    ("reading alone, Mpx/s", "inference", "b_read_mpx_s", _num(".1f")),
    ("end to end, JPEG decoded on the GPU, Mpx/s", "inference_nvjpeg", "c_end_to_end_mpx_s", _num(".1f")),
    ("the same ÷ model only", "inference_nvjpeg", "ratio_c_over_a", _num(".3f")),
    ("model-zoo patch pipeline ÷ ours (time)", "inference", "f_time_ratio_peer_over_ours", _num(".1f")),
    ("fast path ÷ fp32 (model only)", "inference", "g_fast_speedup", _num(".2f")),
    ("fast path: largest probability difference", "inference", "g_fast_max_abs_diff", _num(".4f")),
    ("peak GPU memory, MB", "inference", "d_peak_gpu_mb", _num(".0f")),
    ("large slide: width (px)", "large", "slide.width", str),
    ("large slide: making it, s", "large", "slide.make_seconds", _num(".0f")),
    ("large slide end to end (tiny FCN), s", "large", "seconds.total", _num(".1f")),
    ("large slide tissue throughput, Mpx/s", "large", "throughput_tissue_mpx_s", _num(".1f")),
    ("large slide peak RSS main / workers, MB", "large", "peak_rss_mb.main", _num(".0f")),
    ("cuCIM vs OpenSlide: largest pixel difference (0–255)", "readers", "backends.cucim.max_abs_diff", str),
    ("tifffile vs OpenSlide: largest pixel difference (0–255)", "readers", "backends.tifffile.max_abs_diff", str),
    ("MIL paper profile: pipeline patches/s", "train_mil", "pipeline_patches_s", _num(".1f")),
    ("MIL paper profile: model patches/s", "train_mil", "model_patches_s", _num(".1f")),
    ("MIL training ratio", "train_mil", "ratio", _num(".3f")),
    ("WSSS paper profile: pipeline patches/s", "train_wsss", "pipeline_patches_s", _num(".1f")),
    ("WSSS training ratio", "train_wsss", "ratio", _num(".3f")),
    ("DDP backend / world size", "ddp", "backend", str),
    ("DDP all-reduce and replicas agree", "ddp", "replicas_identical", str),
    ("DDP ResNet18 step (bf16, 32/rank), s", "ddp", "step_s", _num(".3f")),
)


def machine() -> dict[str, Any]:
    """GPU names, torch and CUDA versions of this machine."""
    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version()}
    try:
        import torch

        info |= {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(),
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    except Exception as exc:  # the table is still wanted when torch cannot load
        info["torch"] = f"unavailable ({exc})"
    return info


def _steps(folder: Path) -> dict[str, tuple[int, float]]:
    path = folder / "steps.tsv"
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        name, rc, seconds = [*line.split("\t"), "", ""][:3]
        out[name] = (int(rc or -1), float(seconds or "nan"))
    return out


def report(folder: str | Path) -> tuple[str, dict[str, Any]]:
    """The Markdown table and the collected figures of a ``gpu_check.sh`` output folder."""
    folder = Path(folder)
    data: dict[str, Any] = {}
    for name in sorted({row[1] for row in ROWS}):
        path = folder / f"{name}.json"
        try:
            data[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            data[name] = None
    steps = _steps(folder)
    info = machine()
    lines = [f"GPU check, {info.get('date')}: {info.get('gpus')} × {info.get('gpu')}, torch {info.get('torch')}, "
             f"CUDA {info.get('cuda')}", "", "| figure | value |", "|---|---|"]
    for figure, name, key, fmt in ROWS:
        value = _get(data[name], key) if data[name] is not None else None
        if value is None:
            rc = steps.get(name, (None, None))[0]
            shown = "not run" if rc is None else ("timed out" if rc in (124, 137) else f"failed (exit {rc})")
            shown = shown if data[name] is None else "—"
        else:
            shown = fmt(value)
        lines.append(f"| {figure} | {shown} |")
    lines.append("")
    lines.append("steps: " + ", ".join(f"{k} {v[1]:.0f} s (exit {v[0]})" for k, v in steps.items()))
    return "\n".join(lines), {"machine": info, "steps": steps, "figures": data}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of ``argv[0]`` (a gpu_check output folder) and write its ``gpu_check.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m monai_wsseg.bench.gpu_report FOLDER", file=sys.stderr)
        return 2
    table, everything = report(args[0])
    print(table)
    from monai_wsseg.utils.atomic import write_text_atomically

    write_text_atomically(Path(args[0]) / "gpu_check.json", json.dumps(everything, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
