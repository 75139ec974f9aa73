"""A warm-up on slide labels before the paper's proxy labels: a guard against maps that learn upside down.

Paper A starts from ImageNet weights, whose first rankings of a slide's patches already follow tissue
structure. From random weights the first ranking is arbitrary, and the top-α / bottom-β rule can lock it
in. Measured on the project's hard cohort (normal slides rich in lymphoid aggregates and benign
epithelium, both as dark as tumor): dark tissue is pushed towards *normal* by the normal slides, tumor
looks dark too, so the top α of a tumor slide is stroma and never tumor; tumor settles at probability
0.00 and stroma at 0.2 on every slide (validation pixel AUC 0.25 for 12 epochs, with BatchNorm, GroupNorm
or a channel LayerNorm alike; the bottom-β rule alone is not the cause: β = 0 kept the same trap).

During the warm-up every patch of a tumor slide is labelled tumor (α = 1, β = 0: the slide label used as
the patch label). The best answer to that is the chance that a patch comes from a tumor slide, which is
highest for the one tissue that normal slides never hold — tumor — and it needs no ranking of the
network's own, so it cannot lock in a wrong one. The paper's (α, β) then refine the map from a ranking
that is already right.

Switching at once from (1, 0) to (0.2, 0.2) is a shock: in the first epoch of proxy labels the whole map
of every slide flipped for one validation (pixel AUC 0.97 → 0.32 → 0.89 on the hard cohort, seed 0;
0.94 → 0.30 → 0.98 for seed 1). ``ramp`` epochs after the warm-up move (α, β) linearly to the paper's
values instead, so the share of each tumor slide that is labelled shrinks step by step.
"""

from __future__ import annotations

from ignite.engine import Engine, Events

from monai_wsseg.mil.loss import check_alpha_beta

__all__ = ["ProxyWarmup"]


class ProxyWarmup:
    """Attach to the trainer: the loss's ``(alpha, beta)`` are ``(alpha, beta)`` given here in epochs
    ``1 .. epochs``, move linearly to the loss's own values over the next ``ramp`` epochs, and stay there.

    In ramp epoch ``r`` (1 .. ramp) the shares are ``warm + r / (ramp + 1) · (own − warm)``: with
    ``epochs = 2, ramp = 2`` and the paper's (0.2, 0.2), epochs 1–2 use (1, 0), epoch 3 (0.73, 0.07),
    epoch 4 (0.47, 0.13), epoch 5 on (0.2, 0.2). Set from the epoch number at every epoch start, so a
    resumed run gets the same schedule.

    Args:
        loss: a loss with ``alpha`` and ``beta`` attributes (:class:`~monai_wsseg.mil.loss.TopKBottomKMILLoss`).
        epochs: warm-up epochs, ≥ 0 (0: the paper's proxy labels from the start, and no ramp).
        alpha, beta: proxy-label shares during the warm-up (default 1 and 0: the slide label for every patch).
        ramp: epochs, ≥ 0, from the warm-up's shares to the loss's own.
    """

    def __init__(self, loss, epochs: int = 0, alpha: float = 1.0, beta: float = 0.0, ramp: int = 0) -> None:
        for name, value in (("epochs", epochs), ("ramp", ramp)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ProxyWarmup: {name} must be an integer ≥ 0, got {value!r}")
        if not (hasattr(loss, "alpha") and hasattr(loss, "beta")):
            raise ValueError(f"ProxyWarmup: the loss {type(loss).__name__} has no alpha and beta to warm up")
        self.warm = check_alpha_beta(alpha, beta)
        self.loss, self.epochs, self.ramp = loss, epochs, ramp if epochs else 0
        self.own = (float(loss.alpha), float(loss.beta))

    def attach(self, engine: Engine) -> None:
        """Set the loss shares at the start of every epoch (``EPOCH_STARTED``) of ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def shares(self, epoch: int) -> tuple[float, float]:
        """``(alpha, beta)`` of epoch ``epoch`` (counted from 1)."""
        if epoch <= self.epochs:
            return self.warm
        t = (epoch - self.epochs) / (self.ramp + 1)
        if t >= 1:
            return self.own
        (wa, wb), (oa, ob) = self.warm, self.own
        return wa + t * (oa - wa), wb + t * (ob - wb)

    def __call__(self, engine: Engine) -> None:
        """Set the loss's ``alpha`` and ``beta`` to :meth:`shares` of the engine's epoch."""
        self.loss.alpha, self.loss.beta = self.shares(int(engine.state.epoch))
