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
"""

from __future__ import annotations

from ignite.engine import Engine, Events

from monai_wsseg.losses.mil import check_alpha_beta

__all__ = ["ProxyWarmup"]


class ProxyWarmup:
    """Attach to the trainer: the loss's ``(alpha, beta)`` are ``(alpha, beta)`` given here in epochs
    ``1 .. epochs`` and the loss's own values after.

    Set from the epoch number at every epoch start, so a resumed run gets the same schedule.

    Args:
        loss: a loss with ``alpha`` and ``beta`` attributes (:class:`~monai_wsseg.losses.mil.TopKBottomKMILLoss`).
        epochs: warm-up epochs, ≥ 0 (0: the paper's proxy labels from the start).
        alpha, beta: proxy-label shares during the warm-up (default 1 and 0: the slide label for every patch).
    """

    def __init__(self, loss, epochs: int = 0, alpha: float = 1.0, beta: float = 0.0) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"ProxyWarmup: epochs must be an integer ≥ 0, got {epochs!r}")
        if not (hasattr(loss, "alpha") and hasattr(loss, "beta")):
            raise ValueError(f"ProxyWarmup: the loss {type(loss).__name__} has no alpha and beta to warm up")
        self.warm = check_alpha_beta(alpha, beta)
        self.loss, self.epochs = loss, epochs
        self.own = (float(loss.alpha), float(loss.beta))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        self.loss.alpha, self.loss.beta = self.warm if engine.state.epoch <= self.epochs else self.own
