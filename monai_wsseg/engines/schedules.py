"""Learning-rate schedules a bundle selects by name (JSON wires components; it does not branch)."""

from __future__ import annotations

import math

import torch

__all__ = ["SCHEDULES", "lr_scheduler"]

SCHEDULES = ("constant", "cosine", "poly")


def lr_scheduler(optimizer: torch.optim.Optimizer, name: str = "constant", epochs: int = 1,
                 final_fraction: float = 0.05, power: float = 0.9) -> torch.optim.lr_scheduler.LambdaLR:
    """An epoch-level schedule: ``"constant"`` (paper A: Adam at a fixed rate), ``"cosine"`` (from the
    optimizer's rate down to ``final_fraction`` of it over ``epochs`` epochs, then flat) or ``"poly"``
    (paper B: ``(1 − t)^power`` of the rate at the fraction ``t`` of the run done, never below
    ``final_fraction`` of it, so the last epoch still learns).

    Step it once per epoch (MONAI's ``LrScheduleHandler(epoch_level=True)``).
    """
    if name not in SCHEDULES:
        raise ValueError(f"lr_scheduler: schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
    if int(epochs) < 1 or not 0 <= final_fraction <= 1 or not power > 0:
        raise ValueError(f"lr_scheduler: need epochs ≥ 1, final_fraction in [0, 1] and power > 0, got {epochs}, "
                         f"{final_fraction}, {power}")

    def factor(epoch: int) -> float:
        if name == "constant":
            return 1.0
        t = min(1.0, epoch / int(epochs))
        if name == "poly":
            return max(final_fraction, (1.0 - t) ** power)
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
