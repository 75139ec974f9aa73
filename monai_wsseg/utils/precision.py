"""Numeric precision of a network's forward (and backward) pass: one setting for inference and training.

``precision`` is one of:

* ``"auto"`` — on CUDA, bf16 autocast where the GPU supports it, else fp16 autocast (with a gradient
  scaler in training); on a CPU with native bf16 instructions (x86 AVX512-BF16 or AMX, Arm BF16), bf16
  autocast, with channels-last inputs in inference; fp32 otherwise;
* ``"fp32"`` — no autocast (the reference);
* ``"bf16"`` — bf16 autocast (channels-last inputs in inference on the CPU);
* ``"fp16"`` — fp16 autocast (CUDA only: on a CPU fp16 convolutions are far slower than fp32).

Autocast keeps the weights in fp32 and runs convolutions and matrix products in the low-precision type;
reductions, losses and softmax stay in fp32. Measured on the project's 2-core AVX512-BF16 CPU, ResNet50 on a
(2, 3, 512, 512) batch: fp32 0.996 s, channels-last 0.906 s, bf16 + channels-last 0.425 s (2.34×).

Channels-last is asked of the *inputs* only, in inference: PyTorch then runs every convolution channels-last
(as fast as converting the weights too: 0.370 vs 0.371 s above), and the network's weights, which a trainer
may share, keep their layout. Training stays contiguous: with channels-last tensors PyTorch 2.14.1's CPU
backward corrupted the heap on ResNet-38d (dilated convolutions), in fp32 as in bf16; bf16 alone gives a
ResNet18 step on 64 px patches 1.67× and a ResNet50 step on 224 px 1.93×.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from dataclasses import dataclass, replace
from typing import Any

import torch

__all__ = ["PRECISIONS", "Precision", "cpu_has_bf16", "resolve_precision"]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 ``avx512_bf16`` / ``amx_bf16``, Arm ``bf16``), read from
    ``/proc/cpuinfo``; False where that cannot be read (the fp32 path is then the safe choice)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return bool(flags & {"avx512_bf16", "amx_bf16"}) or (arm and "bf16" in flags)


@dataclass(frozen=True)
class Precision:
    """A resolved precision for one device.

    Attributes:
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"``, ``"cuda"`` ...
        channels_last: whether inference inputs are made channels-last (never in training, see the module doc).
        requested: the setting it was resolved from (``"auto"`` or the same as ``name``).
    """

    name: str
    device_type: str
    channels_last: bool = False
    requested: str = "fp32"

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast type, ``None`` for fp32."""
        return _DTYPES[self.name]

    @property
    def needs_scaler(self) -> bool:
        """Whether training needs a gradient scaler (fp16 on CUDA: its range underflows small gradients)."""
        return self.name == "fp16" and self.device_type == "cuda"

    def autocast(self) -> Any:
        """A context in which forward passes run at this precision (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def for_training(self) -> Precision:
        """This precision for a training step: the same autocast, contiguous tensors."""
        return replace(self, channels_last=False)

    def inputs(self, batch: torch.Tensor) -> torch.Tensor:
        """A 4-D inference batch in the memory format this precision wants."""
        if self.channels_last and batch.ndim == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def as_dict(self) -> dict[str, Any]:
        """What ``run.json`` and the slide reports record."""
        return {"precision": self.name, "requested": self.requested, "device": self.device_type,
                "channels_last": self.channels_last}


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> Precision:
    """The :class:`Precision` that ``precision`` (see the module doc) means on ``device``.

    Raises:
        ValueError: an unknown setting, or fp16 asked for on a CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    name = precision
    if precision == "auto":
        if kind == "cuda":
            name = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
        elif kind == "cpu":
            name = "bf16" if cpu_has_bf16() else "fp32"
        else:
            name = "fp32"
    if name == "fp16" and kind == "cpu":
        raise ValueError("precision 'fp16' is for CUDA; on a CPU use 'bf16' (or 'auto')")
    return Precision(name, kind, channels_last=kind == "cpu" and name == "bf16", requested=precision)
