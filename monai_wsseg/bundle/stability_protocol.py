"""The stability protocol: a recipe (bundle + config overlays + cohort), its seeds and the floors every
seed must clear, read from a protocol JSON file (``configs/stability/*.json``).

A protocol's ``kind`` names the bundle it judges: ``"mil"`` (default, :class:`StabilityProtocol`) or ``"wsss"``
(:class:`~monai_wsseg.bundle.stability_wsss.WSSSProtocol`); both share :class:`ProtocolBase` and
:class:`FloorsBase`. :func:`monai_wsseg.bundle.stability.run_stability` runs one; this module only reads and
checks it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Self, override

from monai_wsseg.bundle.definitions import (
    check_keys,
    finite_number,
    read_definition,
    text,
)
from monai_wsseg.bundle.runs import WORKFLOW_ARGS, unknown_overrides

if TYPE_CHECKING:
    from monai_wsseg.bundle.stability_results import FigureSpec

__all__ = ["KINDS", "PROTOCOL_KEYS", "Floors", "FloorsBase", "ProtocolBase", "StabilityProtocol", "check_overrides",
           "config_names", "load_protocol", "parse_seeds"]

#: Override ids the MIL protocol sets itself for every run.
PROTOCOL_KEYS = frozenset({"seed", "output_dir", "dataset_dir", "ckpt_path", "bundle_root", "evaluation#threshold"})

#: Protocol kinds: the bundle each judges.
KINDS: tuple[str, ...] = ("mil", "wsss")

#: Keys of every protocol file; a kind adds its own (``EXTRA_FIELDS``).
_COMMON_FIELDS = frozenset({"description", "root", "name", "kind", "bundle", "configs", "seeds", "dataset_dir",
                            "second_lab_dir", "overrides", "floors"})


@dataclass(frozen=True)
class FloorsBase:
    """What every seed must reach, the parts every kind shares; ``None`` leaves a figure unjudged.

    Attributes:
        warmup: epochs before ``min_val_after_warmup`` starts counting (validation may be poor early).
        min_val_after_warmup: lowest value of the kept checkpoint's validation metric after ``warmup``.

    A kind names its scalar floors in ``_RULES``: ``(floor field, judged figure, "≥" or "≤")``.
    """

    warmup: int = 0
    min_val_after_warmup: float | None = None

    _RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (("min_val_after_warmup", "min_val_after_warmup", "≥"),)

    def __post_init__(self) -> None:
        for name, _, _ in self._RULES:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, finite_number(value, f"floors.{name}"))
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"floors.warmup must be a whole number of epochs >= 0, got {self.warmup!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """From a protocol's ``floors`` object; an unknown key is an error (a typo would judge nothing)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"floors must be an object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"floors: unknown key(s) {unknown} (known: {sorted(known)})")
        return cls(**dict(data))

    def rules(self) -> list[tuple[str, str, str, float]]:
        """``(floor name, figure, "≥" or "≤", limit)`` for each floor that is set."""
        return [(name, figure, op, getattr(self, name)) for name, figure, op in self._RULES
                if getattr(self, name) is not None]


@dataclass(frozen=True)
class Floors(FloorsBase):
    """The MIL bundle's floors (with :class:`FloorsBase`'s ``warmup`` and ``min_val_after_warmup`` on ``val_auc``).

    Attributes:
        min_test_auc: lowest ``kept_test_auc``.
        max_selection_gap: largest ``|kept_test_auc - label_test_auc|``.
        min_second_lab_auc: lowest ``lab2_auc``.
    """

    min_test_auc: float | None = None
    max_selection_gap: float | None = None
    min_second_lab_auc: float | None = None

    _RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("min_test_auc", "kept_test_auc", "≥"), ("min_val_after_warmup", "min_val_after_warmup", "≥"),
        ("max_selection_gap", "selection_gap", "≤"), ("min_second_lab_auc", "lab2_auc", "≥"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_selection_gap is not None and self.max_selection_gap < 0:
            raise ValueError(f"floors.max_selection_gap must be >= 0, got {self.max_selection_gap}")


@dataclass(frozen=True)
class ProtocolBase:
    """What every kind of protocol holds: a bundle, the home data set, seeds, a second lab, overrides.

    Attributes:
        bundle: bundle folder (holding ``configs/``).
        dataset_dir: home data set (split into ``train`` / ``val`` / ``test`` as the bundle reads it).
        seeds: training seeds, distinct, >= 0.
        second_lab_dir: another lab's data set, all of it in ``test``; ``None`` skips the second-lab figures.
        overrides: bundle overrides for every run (the command line's come on top).
        name: title of the tables.
        source: the protocol file, when loaded from one.
        floors: what every seed must reach (each kind narrows it to its own floors).

    A kind sets ``kind``, ``OWNED_KEYS`` (override ids it sets per run), ``EXTRA_FIELDS`` (its own keys of
    the protocol file) and implements :meth:`config_sets`, :meth:`figure_spec` and :meth:`from_data`.
    """

    bundle: Path
    dataset_dir: Path
    seeds: tuple[int, ...]
    second_lab_dir: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    name: str = "stability"
    source: Path | None = None
    floors: FloorsBase = field(default_factory=FloorsBase)

    kind: ClassVar[str] = ""
    OWNED_KEYS: ClassVar[frozenset[str]] = frozenset()
    EXTRA_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        seeds = tuple(self.seeds)
        if not seeds:
            raise ValueError("seeds: the seed list is empty")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ValueError(f"seeds: {s!r} is not a whole number >= 0")
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds: {repeated} given more than once")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "bundle", Path(self.bundle))
        object.__setattr__(self, "dataset_dir", Path(self.dataset_dir))
        if self.second_lab_dir is not None:
            object.__setattr__(self, "second_lab_dir", Path(self.second_lab_dir))
        if not isinstance(self.overrides, Mapping):
            raise ValueError(f"overrides must be an object of bundle overrides, got {type(self.overrides).__name__}")

    @property
    def config_dir(self) -> Path:
        """The bundle's ``configs/`` folder."""
        return self.bundle / "configs"

    @property
    def meta_file(self) -> Path | None:
        """The bundle's ``configs/metadata.json``, or ``None`` when it has none."""
        meta = self.config_dir / "metadata.json"
        return meta if meta.is_file() else None

    def config_sets(self) -> list[list[Path]]:
        """The merged configs the protocol runs (training, evaluation, ...), each a list of files."""
        raise NotImplementedError

    def figure_spec(self) -> FigureSpec:
        """The per-seed figures and how the tables name them."""
        raise NotImplementedError

    @classmethod
    def from_data(cls, data: Mapping[str, Any], common: Mapping[str, Any]) -> ProtocolBase:
        """The protocol of a file's ``data``, given its ``common`` fields already read (paths resolved)."""
        raise NotImplementedError

    def check(self) -> None:
        """Refuse, with one line naming it, a folder or config file that is not there, or data the bundle
        cannot train on (see :meth:`_check_data`).

        Raises:
            FileNotFoundError: the bundle, a config file, the data set or the second lab's data set is missing.
            ValueError: the data set cannot serve the protocol.
        """
        if not self.config_dir.is_dir():
            raise FileNotFoundError(f"{self.bundle}: bundle folder not found (no configs/ in it)")
        for f in dict.fromkeys(itertools.chain.from_iterable(self.config_sets())):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: bundle config file not found")
        if not self.dataset_dir.exists():
            raise FileNotFoundError(f"{self.dataset_dir}: dataset folder not found (dataset_dir)")
        if self.second_lab_dir is not None and not self.second_lab_dir.exists():
            raise FileNotFoundError(f"{self.second_lab_dir}: second lab's dataset folder not found (second_lab_dir)")
        self._check_data()

    def _check_data(self) -> None:
        """A kind's checks of its data, before any seed runs (a study of hours must not fail on its first run)."""

    def settings(self) -> dict[str, Any]:
        """What a seed's figures depend on besides the seed (kept in ``result.json`` to spot a changed recipe)."""
        return {"bundle": str(self.bundle), "dataset_dir": str(self.dataset_dir),
                "second_lab_dir": None if self.second_lab_dir is None else str(self.second_lab_dir)}


def config_names(value: Any, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of config file names; ``ValueError`` naming ``what`` unless a non-empty list of them."""
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(c, str) and c for c in value):
        raise ValueError(f"{what} must be a non-empty list of config file names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class StabilityProtocol(ProtocolBase):
    """The MIL bundle's recipe and the seeds it is judged on (``kind`` ``"mil"``); see :class:`ProtocolBase`.

    Attributes:
        configs: training config files in ``bundle/configs``, later ones overlaying earlier ones.
        eval_configs: evaluation config files; default ``inference.json``, the overlays of ``configs``
            other than ``train.json`` (the profile: backbone, resolution, tiles), then ``evaluate.json``.
        floors: what every seed must reach.
    """

    configs: tuple[str, ...] = ("train.json",)
    eval_configs: tuple[str, ...] | None = None
    floors: Floors = field(default_factory=Floors)

    kind: ClassVar[str] = "mil"
    OWNED_KEYS: ClassVar[frozenset[str]] = PROTOCOL_KEYS
    EXTRA_FIELDS: ClassVar[frozenset[str]] = frozenset({"eval_configs"})

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "configs", config_names(self.configs, "configs"))
        if self.eval_configs is not None:
            object.__setattr__(self, "eval_configs", config_names(self.eval_configs, "eval_configs"))

    @classmethod
    @override
    def from_data(cls, data: Mapping[str, Any], common: Mapping[str, Any]) -> StabilityProtocol:
        return cls(**common, configs=data.get("configs", ("train.json",)), eval_configs=data.get("eval_configs"),
                   floors=Floors.from_mapping(data.get("floors", {})))

    def train_files(self) -> list[Path]:
        """The training config files, merged in this order."""
        return [self.config_dir / c for c in self.configs]

    def eval_files(self) -> list[Path]:
        """The evaluation config files: ``eval_configs``, else inference + the training overlays + evaluate."""
        names = self.eval_configs or ("inference.json", *(c for c in self.configs if c != "train.json"),
                                      "evaluate.json")
        return [self.config_dir / c for c in names]

    @override
    def config_sets(self) -> list[list[Path]]:
        return [self.train_files(), self.eval_files()]

    @override
    def figure_spec(self) -> FigureSpec:
        from monai_wsseg.bundle.stability_results import MIL_SPEC

        return MIL_SPEC

    def _check_data(self) -> None:
        # A slide-labelled cohort (manifest.csv) whose training split lacks a label would fail every seed
        # the same way after minutes of set-up; say so once, before any seed runs.
        manifest = self.dataset_dir / "manifest.csv"
        if not manifest.is_file():
            return
        from monai_wsseg.datasets.manifest import load_manifest
        from monai_wsseg.mil.trainer import mil_slides

        mil_slides(load_manifest(manifest, check_files=False), "train", what=str(manifest))

    @override
    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "configs": list(self.configs),
                "eval_configs": [f.name for f in self.eval_files()]}


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1, 4"`` → ``(0, 1, 4)``.

    Raises:
        ValueError: no seed, or a part that is not a whole number.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("--seeds: the seed list is empty")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--seeds: expected whole numbers separated by commas, got {text!r}") from None


def _protocol_class(kind: Any) -> type[ProtocolBase]:
    if kind == "mil":
        return StabilityProtocol
    if kind == "wsss":  # imported here: that module builds on this one
        from monai_wsseg.bundle.stability_wsss import WSSSProtocol

        return WSSSProtocol
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def load_protocol(path: str | os.PathLike) -> ProtocolBase:
    """Read a protocol JSON file (e.g. ``configs/stability/mil_cpu.json``).

    Keys: ``bundle``, ``dataset_dir``, ``seeds`` (required), ``kind`` (``"mil"``, the default, or ``"wsss"``),
    ``configs``, ``second_lab_dir``, ``overrides``, ``floors``, ``name``, ``description`` and ``root``, and the
    kind's own (MIL: ``eval_configs``; WSSS: ``phase_overrides``, and ``configs`` per phase: see
    :class:`~monai_wsseg.bundle.stability_wsss.WSSSProtocol`). Relative paths are relative to ``root``, itself
    relative to the protocol file's folder (default: that folder); a protocol kept in ``configs/stability/``
    of the project sets ``"root": "../.."``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or a missing, unknown or ill-typed key; the message names the file.
    """
    path = Path(path)
    data, root = read_definition(path, what="protocol")
    try:
        cls = _protocol_class(data.get("kind", "mil"))
        known = _COMMON_FIELDS | cls.EXTRA_FIELDS
        check_keys(data, known, required=("bundle", "dataset_dir", "seeds"))

        def resolve(key: str) -> Path | None:
            value = data.get(key)
            return None if value is None else (root / text(value, key)).resolve()

        seeds = data["seeds"]
        if not isinstance(seeds, list):
            raise ValueError(f"seeds must be a list of whole numbers, got {seeds!r}")
        common = {"bundle": resolve("bundle"), "dataset_dir": resolve("dataset_dir"), "seeds": tuple(seeds),
                  "second_lab_dir": resolve("second_lab_dir"), "overrides": data.get("overrides", {}),
                  "name": text(data.get("name", path.stem), "name"), "source": path.resolve()}
        return cls.from_data(data, common)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None



def check_overrides(protocol: ProtocolBase, overrides: Mapping[str, Any]) -> None:
    """Refuse overrides the protocol sets itself, workflow arguments, and ids no config has a place for.

    Raises:
        ValueError: naming the offending ids.
    """
    owned = sorted(set(overrides) & protocol.OWNED_KEYS)
    if owned:
        raise ValueError(f"bundle overrides {owned} are set by the protocol per seed (use --seeds / --dataset_dir)")
    workflow = sorted(set(overrides) & WORKFLOW_ARGS)
    if workflow:
        raise ValueError(f"bundle overrides {workflow} select how the bundle runs; the protocol sets them")
    unknown = unknown_overrides(overrides, protocol.config_sets())
    if unknown:
        raise ValueError(f"bundle overrides {unknown}: none of the protocol's configs (training, evaluation) "
                         "defines them")
