"""Which slides share a training step: both labels in every step.

Paper A trains on one bag (one slide) per step. With few slides and a colour cast per slide, a step of
tumor slides only lets the network lower the loss by raising everything of that colour, and a step of one
slide normalises BatchNorm over that slide alone, so tumor and normal tissue of different slides are never
compared in one batch. :class:`BalancedBagSampler` makes every step hold tumor and normal bags in equal
numbers (an odd ``bags_per_step`` adds one bag of either label at random).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["BagStepSampler"]


class BagStepSampler(Sampler[list[int]]):
    """Batch sampler over slide indices: which bags make each training step.

    ``balanced=False`` is paper A's sampling: a random order of all slides cut into steps of
    ``bags_per_step`` (the last step may be shorter). ``balanced=True`` makes every step hold both labels:

    An epoch visits every slide of the larger label once, in random order, and pairs it with slides of the
    other label drawn in random order (cycled, so the smaller label's slides are seen more than once when
    the labels are unbalanced: 3 tumor + 2 normal slides give 3 steps of 2 bags, each with one of each).
    Randomness comes from torch's global generator, which the MIL trainer re-seeds at every epoch start,
    so a resumed run draws the same steps. Under ``torch.distributed`` each rank takes every
    ``world_size``-th step (all ranks get the same number of steps; the last steps are repeated if needed).

    Args:
        labels: slide label (0 normal, 1 tumor) per dataset index.
        bags_per_step: bags per step (≥ 2 when balanced).
        balanced: both labels in every step.

    Raises:
        ValueError: labels that are not all 0/1, a label with no slide, or ``bags_per_step`` < 2 when balanced.
    """

    def __init__(self, labels: Sequence[int], bags_per_step: int = 2, balanced: bool = True) -> None:
        labels = [int(v) for v in labels]
        if any(v not in (0, 1) for v in labels):
            raise ValueError(f"BagStepSampler: slide labels must be 0 or 1, got {sorted(set(labels))}")
        if int(bags_per_step) < 1:
            raise ValueError(f"BagStepSampler: bags_per_step must be ≥ 1, got {bags_per_step}")
        self.n, self.balanced, self.bags_per_step = len(labels), bool(balanced), int(bags_per_step)
        self.tumor = [i for i, v in enumerate(labels) if v == 1]
        self.normal = [i for i, v in enumerate(labels) if v == 0]
        if not self.balanced:
            return
        if not self.tumor or not self.normal:
            missing = "tumor (label 1)" if not self.tumor else "normal (label 0)"
            raise ValueError(f"BagStepSampler: {len(labels)} slide(s) but none {missing}; "
                             "balanced steps need both")
        if self.bags_per_step < 2:
            raise ValueError(f"BagStepSampler: balanced steps need bags_per_step ≥ 2, got {bags_per_step}")

    def _n_steps(self) -> int:
        if not self.balanced:
            return -(-self.n // self.bags_per_step)
        return -(-max(len(self.tumor), len(self.normal)) // (self.bags_per_step // 2))

    def _steps(self) -> list[list[int]]:
        if not self.balanced:
            order = torch.randperm(self.n).tolist()
            return [order[i:i + self.bags_per_step] for i in range(0, self.n, self.bags_per_step)]
        per_label = self.bags_per_step // 2
        n_steps = self._n_steps()

        def stream(ids: list[int], n: int) -> list[int]:
            out: list[int] = []
            while len(out) < n:
                out += [ids[int(j)] for j in torch.randperm(len(ids))]
            return out[:n]

        tumor = stream(self.tumor, n_steps * per_label)
        normal = stream(self.normal, n_steps * per_label)
        extra = stream(self.tumor + self.normal, n_steps) if self.bags_per_step % 2 else []
        steps = []
        for s in range(n_steps):
            step = tumor[s * per_label:(s + 1) * per_label] + normal[s * per_label:(s + 1) * per_label]
            steps.append(step + extra[s:s + 1])
        return steps

    def _rank(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[list[int]]:
        steps = self._steps()
        rank, world = self._rank()
        if world > 1:
            per_rank = -(-len(steps) // world)
            steps = (steps * world)[: per_rank * world]
            steps = steps[rank::world]
        return iter(steps)

    def __len__(self) -> int:
        _, world = self._rank()
        return -(-self._n_steps() // world)
