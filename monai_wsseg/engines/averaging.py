"""An exponential moving average of a network's weights, updated after every training step.

Weak labels make noisy gradients: the proxy labels of a step come from the network's own ranking, and a
few steps can flip it (a validation AUC of 0.99 at one epoch and 0.28 at the next). The average of the
recent weights moves slowly through such swings, so validation, checkpoint selection and the saved model
use it instead of the raw weights. BatchNorm statistics are averaged with the weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch import nn

__all__ = ["WeightEMA"]


class WeightEMA:
    """EMA of ``network``'s parameters and buffers; ``module`` is the averaged network.

    After update ``t`` (counted from 0) the average moves by ``1 − d_t`` towards the current weights, with
    ``d_t = min(decay, t / (t + 1))``: the plain mean of all weights so far until the average reaches its
    horizon of ``1 / (1 − decay)`` steps, then an exponential average. (With the common ramp
    ``(1 + t) / (10 + t)`` a run of 144 steps never reaches decay 0.95 and averages over a few steps only.)
    Integer buffers (BatchNorm's batch counter) are copied. ``decay = 0`` turns averaging off: ``module``
    is ``network`` itself and nothing is copied (the paper's recipe).

    ``state_dict`` / ``load_state_dict`` make it a checkpoint entry, so a resumed run continues the average.

    Args:
        network: the trained network (unwrapped from DDP through ``.module`` when wrapped).
        decay: in [0, 1).
    """

    def __init__(self, network: nn.Module, decay: float = 0.9) -> None:
        if not 0 <= float(decay) < 1:
            raise ValueError(f"WeightEMA: decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.network = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
        self.module = copy.deepcopy(self.network).eval() if self.decay > 0 else self.network
        if self.decay > 0:
            for p in self.module.parameters():
                p.requires_grad_(False)
        self.updates = 0

    def attach(self, engine: Engine) -> None:
        """Update the average after every iteration of ``engine``."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _: self.update())

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the network's current weights."""
        if self.decay == 0:
            return
        d = min(self.decay, self.updates / (self.updates + 1))
        mine = self.module.state_dict()
        for name, value in self.network.state_dict().items():
            if value.is_floating_point():
                mine[name].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                mine[name].copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count, for a checkpoint."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (the weights only when averaging is on)."""
        if self.decay > 0:
            self.module.load_state_dict(state["module"])
        self.updates = int(state.get("updates", 0))
