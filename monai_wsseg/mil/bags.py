"""MIL bags: one item per slide per epoch = N random tissue patches of that slide, read on the fly.

Paper A samples 150 patches of 224 px at 20x from a slide's tissue each time the slide is visited. Here
positions come from :func:`monai_wsseg.wsi.grid.tissue_grid` (non-overlapping patches with at least
``min_tissue`` tissue), are drawn without replacement (with replacement only for slides with fewer
positions than ``bag_size``), and change every epoch: the generator is seeded from ``(seed, epoch,
slide index)``, so a run is reproducible and a resumed run draws the same bags as an uninterrupted one.
A randomizable ``transform`` (augmentation) is re-seeded from the same triple for every item, so the
augmentation of a bag depends neither on the order of the items nor on the DataLoader's workers.
Call :meth:`SlideBagDataset.set_epoch` at the start of each epoch (the training engine does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.utils.seeding import seed_transform
from monai_wsseg.wsi.grid import sample_positions, tissue_grid
from monai_wsseg.wsi.slide import Slide, SlideReadError, open_slide
from monai_wsseg.wsi.tissue import compute_tissue_mask

__all__ = ["SlideBagDataset", "collate_bags"]

logger = logging.getLogger(__name__)


class SlideBagDataset(Dataset):
    """Bags of tissue patches, one per slide.

    Args:
        slides: manifest records (their ``label`` is used) or ``(path, label)`` pairs.
        bag_size: patches per bag (paper: 150).
        patch_size: patch side in pixels at ``mpp`` (paper: 224).
        mpp: patch resolution in microns per pixel (paper: 20x ≈ 0.5).
        min_tissue: minimum tissue fraction of a patch.
        tissue_mpp: resolution of the tissue mask.
        transform: applied to the ``(N, 3, P, P)`` uint8 bag tensor (e.g. augmentation + standardisation);
            ``None`` returns it as float in [0, 1].
        seed: base seed of the patch draws.
        backend: slide reading backend.
        stain_normalizer: e.g. :func:`monai_wsseg.wsi.stain.stain_normalizer`'s result: every slide's patches are
            mapped to the reference stain by one transform fitted on that slide's tissue (as
            :class:`~monai_wsseg.inference.engine.WSIInferer` does at inference), so a slide's colour cast
            cannot tell the network which slide, hence which label, a patch comes from. ``None``: as read.
        bags_per_slide: bags drawn from each slide per epoch (item ``j`` is a bag of slide ``j % n_slides``):
            more optimisation steps per epoch for a cohort of few slides, each bag a new draw.

    Items:
        ``{"image": (N, 3, P, P) tensor, "label": () float tensor, "slide": str, "positions": (N, 2) level-0 x, y}``.
        A slide that cannot be read gives ``{"slide": str, "error": str}`` instead (see :func:`collate_bags`).
    """

    def __init__(
        self,
        slides: Sequence[SlideRecord | tuple[str | os.PathLike, int]],
        *,
        bag_size: int = 150,
        patch_size: int = 224,
        mpp: float = 0.5,
        min_tissue: float = 0.5,
        tissue_mpp: float = 8.0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        seed: int = 0,
        backend: str = "auto",
        bags_per_slide: int = 1,
        stain_normalizer=None,
    ) -> None:
        if bag_size < 1 or patch_size < 1:
            raise ValueError(f"bag_size and patch_size must be ≥ 1, got {bag_size} and {patch_size}")
        if isinstance(bags_per_slide, bool) or not isinstance(bags_per_slide, int) or bags_per_slide < 1:
            raise ValueError(f"bags_per_slide must be an integer ≥ 1, got {bags_per_slide!r}")
        self.bags_per_slide, self.stain_normalizer = bags_per_slide, stain_normalizer
        self._stains: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        self.items: list[tuple[Path, int]] = []
        for s in slides:
            path, label = (s.slide, s.label) if isinstance(s, SlideRecord) else (Path(s[0]), s[1])
            if label not in (0, 1):
                raise ValueError(f"{path}: a MIL bag needs a slide label 0 or 1, got {label!r}")
            self.items.append((Path(path), int(label)))
        if not self.items:
            raise ValueError("no slides given to the bag dataset")
        self.bag_size, self.patch_size, self.mpp = bag_size, patch_size, mpp
        self.min_tissue, self.tissue_mpp = min_tissue, tissue_mpp
        self.transform, self.seed, self.backend = transform, seed, backend
        self.epoch = 0
        self._slides: dict[int, Slide] = {}
        self._grids: dict[int, np.ndarray] = {}
        self._prepared = False

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's bags (call before iterating; workers see it when they are re-created).

        The first call also runs :meth:`prepare` in the calling process, so that the workers of every epoch
        start with the slides' grids and stain fits instead of each recomputing them."""
        self.epoch = int(epoch)
        if not self._prepared:
            self.prepare()

    def prepare(self) -> None:
        """Compute every slide's tissue grid and stain fit now, in this process (cached for its lifetime).

        The training loader's workers are re-created each epoch from the main process's dataset, so what a
        worker computes is lost at the epoch's end: computed here once, before the first epoch, every
        worker inherits it (the CPU demo spent ~2.5 s of each 21 s epoch recomputing them). Slides are
        opened and closed again: a handle opened here and shared by forked workers would share its file
        offset. A slide that cannot be read is left to :meth:`__getitem__`, which reports and skips it."""
        self._prepared = True
        from tqdm.auto import tqdm

        todo = [i for i in range(len(self.items)) if i not in self._grids]
        for i in tqdm(todo, desc="preparing slides", unit="slide", leave=False, disable=len(todo) < 8):
            path = self.items[i][0]
            try:
                with open_slide(path, backend=self.backend) as slide:
                    self._fit(i, slide)
            except (SlideReadError, ValueError, OSError) as exc:
                logger.debug("%s: not prepared (%s); its bags will report it", path, exc)

    def __len__(self) -> int:
        return len(self.items) * self.bags_per_slide

    @property
    def labels(self) -> list[int]:
        """Slide label of every item (index ``j`` → slide ``j % n_slides``), e.g. for a step sampler."""
        return [self.items[j % len(self.items)][1] for j in range(len(self))]

    def positions(self, i: int) -> np.ndarray:
        """All candidate patch positions of slide ``i``, ``(M, 2)`` level-0 x, y (cached per process)."""
        if i not in self._grids:
            self._fit(i, self._slide(i))
        return self._grids[i]

    def _fit(self, i: int, slide: Slide) -> None:
        tissue = compute_tissue_mask(slide, mpp=self.tissue_mpp)
        if self.stain_normalizer is not None:
            from monai_wsseg.wsi.stain import fit_slide_stain

            self._stains[i] = fit_slide_stain(self.stain_normalizer, slide, tissue)
        self._grids[i] = tissue_grid(slide, tissue, patch_size=self.patch_size, mpp=self.mpp,
                                     min_tissue=self.min_tissue)

    def _slide(self, i: int) -> Slide:
        if i not in self._slides:
            self._slides[i] = open_slide(self.items[i][0], backend=self.backend)
        return self._slides[i]

    def __getitem__(self, j: int) -> dict:
        i = j % len(self.items)
        path, label = self.items[i]
        try:
            rng = np.random.default_rng([self.seed, self.epoch, j])
            chosen = sample_positions(self.positions(i), self.bag_size, rng)
            slide = self._slide(i)
            size = (self.patch_size, self.patch_size)
            patches = np.stack([slide.read_region(tuple(p), size, mpp=self.mpp) for p in chosen])
        except (SlideReadError, ValueError, OSError) as exc:
            # The training loop logs and skips the slide, and lists it at the end of the epoch.
            logger.warning("%s: skipped this epoch: %s", path, exc)
            return {"slide": str(path), "error": str(exc).splitlines()[0]}
        bag = torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous()
        if i in self._stains:
            bag = self._stains[i](bag)
        seed_transform(self.transform, (self.seed, self.epoch, j, 1))
        bag = self.transform(bag) if self.transform is not None else bag.float() / 255.0
        return {"image": bag, "label": torch.tensor(float(label)), "slide": str(path),
                "positions": torch.from_numpy(chosen)}


def collate_bags(items: list[dict]) -> dict:
    """Stack the readable bags ``(B, N, 3, P, P)`` and list the slides that failed under ``"errors"``."""
    good = [it for it in items if "error" not in it]
    batch: dict = {"errors": [(it["slide"], it["error"]) for it in items if "error" in it]}
    if good:
        batch["image"] = torch.stack([it["image"] for it in good])
        batch["label"] = torch.stack([it["label"] for it in good])
        batch["positions"] = torch.stack([it["positions"] for it in good])
    batch["slide"] = [it["slide"] for it in good]
    return batch
