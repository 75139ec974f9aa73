"""The progressive dropout coefficient μ of paper B (eq. 11) and the Ignite handler that applies it.

Paper B: "The initial µ is set to 1 at the first three epochs … After the 3-th epoch, we start the
dropout", then ``μ_t = σ·μ_{t−1}`` while that stays above the lower bound ``l``, else ``l`` (eq. 11), with
σ = 0.985 and l = 0.65. With 0-based epochs ``t``::

    μ(t) = μ0                                  for t < warmup
    μ(t) = max(σ · μ(t − 1), l)                for t ≥ warmup

so epochs 0–2 use μ = 1, epoch 3 is the first with dropping (μ = 0.985), and l is reached at epoch 31
(after 29 decays): a 20-epoch LUAD-HistoSeg run ends at μ ≈ 0.773, a 40-epoch BCSS-WSSS run on the floor.

The reference code instead decays by 0.98 from epoch 0 and only switches PDA on from the 4th epoch, so
its floor is never reached in 20 epochs. ``decay_start=0, sigma=0.98, floor=0, warmup_attention=False``
approximates it (whether its first PDA epoch uses 0.98³ or 0.98⁴ is not known to us).

Ablations of paper B, Table III, as ``mode``: ``"pda"`` (the schedule above), ``"constant"`` (dropout
attention with a constant μ = 0.7 after the same warm-up) and ``"none"`` (no PDA: ``network.mu = None``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ignite.engine import Engine, Events
from torch import nn

__all__ = ["PDAScheduleHandler", "mu_schedule", "unwrap_network"]

logger = logging.getLogger(__name__)

_MODES = ("pda", "constant", "none")


def mu_schedule(epoch: int, warmup: int = 3, sigma: float = 0.985, floor: float = 0.65, mu0: float = 1.0,
                decay_start: int | None = None) -> float:
    """μ for the 0-based ``epoch`` (paper B, eq. 11).

    Args:
        epoch: 0-based epoch index.
        warmup: epochs at the start with μ = ``mu0`` (paper: 3), i.e. the first decayed epoch.
        sigma: decay per epoch σ (paper: 0.985).
        floor: lower bound l (paper: 0.65).
        mu0: initial μ (paper: 1).
        decay_start: first decayed epoch when it differs from ``warmup`` (the reference code decays
            from epoch 0 but switches PDA on at epoch 3; :class:`PDAScheduleHandler` does the switching).

    Returns:
        ``mu0`` for ``epoch < decay_start``, else ``max(σ·μ(epoch−1), floor)`` — computed by the same
        repeated multiplication, so it equals a hand-written loop bit for bit.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be ≥ 0, got {epoch}")
    if warmup < 0:
        raise ValueError(f"warmup must be ≥ 0, got {warmup}")
    if not 0.0 < sigma <= 1.0:
        raise ValueError(f"sigma must be in (0, 1], got {sigma}")
    if not 0.0 <= floor <= mu0 <= 1.0 or mu0 <= 0.0:
        raise ValueError(f"need 0 ≤ floor ≤ mu0 ≤ 1 and mu0 > 0, got floor={floor}, mu0={mu0}")
    start = warmup if decay_start is None else decay_start
    mu = float(mu0)
    for _ in range(max(0, epoch - start + 1)):
        mu = max(sigma * mu, floor)
    return mu


class _OwnsMu(Protocol):
    """What the schedule drives: a module with a settable PDA coefficient μ (``None``: PDA off)."""

    mu: float | None


def unwrap_network(network: Any) -> _OwnsMu:
    """The module that owns ``mu`` inside DDP / DataParallel (``.module``) or ``torch.compile`` wrappers."""
    current = network
    for _ in range(8):  # wrappers nest a few levels at most
        if hasattr(current, "mu"):
            return current
        inner = getattr(current, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(current, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        current = inner
    raise TypeError(f"{type(network).__name__} has no `mu` (not a PDAClassifier, nor a wrapper around one)")


class PDAScheduleHandler:
    """Set the network's μ at every ``EPOCH_STARTED`` (Ignite / MONAI handler).

    Stateless: μ is recomputed from ``engine.state.epoch``, so a resumed run gets the right value.
    The value is also stored as ``engine.state.pda_mu`` (``None`` when PDA is off) and logged.

    Args:
        network_or_attr: the network (a ``PDAClassifier``, possibly wrapped in DDP), or the name of the
            engine attribute holding it (``"network"`` for MONAI's ``SupervisedTrainer``), resolved at
            every epoch so wrapping after construction is fine.
        warmup: epochs at the start with μ = ``mu0`` (paper: 3).
        sigma: decay rate σ (paper: 0.985).
        floor: lower bound l (paper: 0.65).
        mode: ``"pda"`` (schedule), ``"constant"`` (``constant_mu`` after the warm-up), ``"none"`` (no PDA).
        constant_mu: μ of the ``"constant"`` mode (paper's "DA" ablation: 0.7).
        mu0: initial μ (paper: 1).
        warmup_attention: during the warm-up, keep the attention with nothing dropped (μ = ``mu0``,
            paper's eqs. 4–10 as written) if True; switch PDA off (``mu = None``) if False (reference).
        decay_start: first epoch whose μ is decayed (default ``warmup``; reference: 0).

    Example (bundle ``train#handlers``)::

        {"_target_": "monai_wsseg.wsss.pda_schedule.PDAScheduleHandler",
         "network_or_attr": "network", "warmup": 3, "sigma": 0.985, "floor": 0.65}
    """

    def __init__(
        self,
        network_or_attr: nn.Module | str = "network",
        warmup: int = 3,
        sigma: float = 0.985,
        floor: float = 0.65,
        mode: str = "pda",
        constant_mu: float = 0.7,
        mu0: float = 1.0,
        warmup_attention: bool = True,
        decay_start: int | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not 0.0 < constant_mu <= 1.0:
            raise ValueError(f"constant_mu must be in (0, 1], got {constant_mu}")
        mu_schedule(0, warmup, sigma, floor, mu0, decay_start)  # validates the schedule's arguments
        if not isinstance(network_or_attr, str):
            unwrap_network(network_or_attr)  # fail at construction, not at the first epoch
        self.network_or_attr = network_or_attr
        self.warmup, self.sigma, self.floor, self.mu0 = int(warmup), float(sigma), float(floor), float(mu0)
        self.mode, self.constant_mu = mode, float(constant_mu)
        self.warmup_attention, self.decay_start = bool(warmup_attention), decay_start

    def mu_at(self, epoch: int) -> float | None:
        """μ for the 0-based ``epoch`` under this handler's mode (``None``: PDA off)."""
        if self.mode == "none":
            return None
        if epoch < self.warmup:
            return self.mu0 if self.warmup_attention else None
        if self.mode == "constant":
            return self.constant_mu
        return mu_schedule(epoch, self.warmup, self.sigma, self.floor, self.mu0, self.decay_start)

    def attach(self, engine: Engine) -> None:
        """Run at every ``EPOCH_STARTED`` of ``engine``."""
        if not engine.has_event_handler(self, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def _network(self, engine: Engine) -> _OwnsMu:
        if isinstance(self.network_or_attr, str):
            target: Any = engine
            for part in self.network_or_attr.split("."):
                if not hasattr(target, part):
                    raise AttributeError(f"the engine has no attribute {self.network_or_attr!r} holding the network")
                target = getattr(target, part)
            return unwrap_network(target)
        return unwrap_network(self.network_or_attr)

    def __call__(self, engine: Engine) -> None:
        """Set μ of the epoch that starts on the network and in ``engine.state.pda_mu``, and log it."""
        epoch = engine.state.epoch - 1  # Ignite counts epochs from 1 and has already incremented it
        mu = self.mu_at(epoch)
        self._network(engine).mu = mu
        engine.state.pda_mu = mu  # type: ignore[attr-defined]  # Ignite's State takes custom attributes
        logger.info("epoch %d: PDA mu = %s (mode %s)", epoch + 1, "off" if mu is None else f"{mu:.4f}", self.mode)
