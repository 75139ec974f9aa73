"""The stability protocol: a recipe (bundle + config overlays + cohort), its seeds and the floors every
seed must clear, read from a protocol JSON file (``configs/stability/*.json``).

:func:`monai_wsseg.bundle.stability.run_stability` runs one; this module only reads and checks it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_wsseg.bundle_runs import WORKFLOW_ARGS, one_line, unknown_overrides

__all__ = ["PROTOCOL_KEYS", "Floors", "StabilityProtocol", "check_overrides", "load_protocol", "parse_seeds"]

#: Override ids the protocol sets itself for every run.
PROTOCOL_KEYS = frozenset({"seed", "output_dir", "dataset_dir", "ckpt_path", "bundle_root", "evaluation#threshold"})

_PROTOCOL_FIELDS = frozenset({"description", "root", "name", "bundle", "configs", "eval_configs", "seeds",
                              "dataset_dir", "second_lab_dir", "overrides", "floors"})


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Floors:
    """What every seed must reach; ``None`` leaves a figure unjudged.

    Attributes:
        min_test_auc: lowest ``kept_test_auc``.
        warmup: epochs before ``min_val_after_warmup`` starts counting (validation may be poor early).
        min_val_after_warmup: lowest ``val_auc`` of any epoch after ``warmup``.
        max_selection_gap: largest ``|kept_test_auc - label_test_auc|``.
        min_second_lab_auc: lowest ``lab2_auc``.
    """

    min_test_auc: float | None = None
    warmup: int = 0
    min_val_after_warmup: float | None = None
    max_selection_gap: float | None = None
    min_second_lab_auc: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_test_auc", "min_val_after_warmup", "max_selection_gap", "min_second_lab_auc"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _number(value, f"floors.{name}"))
        if self.max_selection_gap is not None and self.max_selection_gap < 0:
            raise ValueError(f"floors.max_selection_gap must be >= 0, got {self.max_selection_gap}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"floors.warmup must be a whole number of epochs >= 0, got {self.warmup!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Floors:
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
        pairs = (("min_test_auc", "kept_test_auc", "≥"), ("min_val_after_warmup", "min_val_after_warmup", "≥"),
                 ("max_selection_gap", "selection_gap", "≤"), ("min_second_lab_auc", "lab2_auc", "≥"))
        return [(name, figure, op, getattr(self, name)) for name, figure, op in pairs
                if getattr(self, name) is not None]


@dataclass(frozen=True)
class StabilityProtocol:
    """A recipe and the seeds it is judged on.

    Attributes:
        bundle: bundle folder (holding ``configs/``).
        dataset_dir: home cohort (manifest with ``train`` / ``val`` / ``test`` splits).
        seeds: training seeds, distinct, >= 0.
        configs: training config files in ``bundle/configs``, later ones overlaying earlier ones.
        eval_configs: evaluation config files; default ``inference.json``, the overlays of ``configs``
            other than ``train.json`` (the profile: backbone, resolution, tiles), then ``evaluate.json``.
        second_lab_dir: another lab's cohort, every slide in ``test``; ``None`` skips ``lab2_auc``.
        floors: what every seed must reach.
        overrides: bundle overrides for every run (the command line's come on top).
        name: title of the tables.
        source: the protocol file, when loaded from one.
    """

    bundle: Path
    dataset_dir: Path
    seeds: tuple[int, ...]
    configs: tuple[str, ...] = ("train.json",)
    eval_configs: tuple[str, ...] | None = None
    second_lab_dir: Path | None = None
    floors: Floors = field(default_factory=Floors)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    name: str = "stability"
    source: Path | None = None

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
        for name in ("configs", "eval_configs"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (list, tuple)) or not value or not all(isinstance(c, str) and c for c in value):
                raise ValueError(f"{name} must be a non-empty list of config file names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "bundle", Path(self.bundle))
        object.__setattr__(self, "dataset_dir", Path(self.dataset_dir))
        if self.second_lab_dir is not None:
            object.__setattr__(self, "second_lab_dir", Path(self.second_lab_dir))
        if not isinstance(self.overrides, Mapping):
            raise ValueError(f"overrides must be an object of bundle overrides, got {type(self.overrides).__name__}")

    @property
    def config_dir(self) -> Path:
        return self.bundle / "configs"

    @property
    def meta_file(self) -> Path | None:
        meta = self.config_dir / "metadata.json"
        return meta if meta.is_file() else None

    def train_files(self) -> list[Path]:
        return [self.config_dir / c for c in self.configs]

    def eval_files(self) -> list[Path]:
        names = self.eval_configs or ("inference.json", *(c for c in self.configs if c != "train.json"),
                                      "evaluate.json")
        return [self.config_dir / c for c in names]

    def check(self) -> None:
        """Refuse, with one line naming it, a folder or config file that is not there.

        Raises:
            FileNotFoundError: the bundle, a config file, the cohort or the second lab's cohort is missing.
            ValueError: the cohort's ``manifest.csv`` has a training split without both slide labels.
        """
        if not self.config_dir.is_dir():
            raise FileNotFoundError(f"{self.bundle}: bundle folder not found (no configs/ in it)")
        for f in dict.fromkeys(self.train_files() + self.eval_files()):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: bundle config file not found")
        if not self.dataset_dir.exists():
            raise FileNotFoundError(f"{self.dataset_dir}: dataset folder not found (dataset_dir)")
        if self.second_lab_dir is not None and not self.second_lab_dir.exists():
            raise FileNotFoundError(f"{self.second_lab_dir}: second lab's dataset folder not found (second_lab_dir)")
        self._check_training_labels()

    def _check_training_labels(self) -> None:
        # A slide-labelled cohort (manifest.csv) whose training split lacks a label would fail every seed
        # the same way after minutes of set-up; say so once, before any seed runs.
        manifest = self.dataset_dir / "manifest.csv"
        if not manifest.is_file():
            return
        from monai_wsseg.data.manifest import load_manifest
        from monai_wsseg.engines.mil import mil_slides

        mil_slides(load_manifest(manifest, check_files=False), "train", what=str(manifest))

    def settings(self) -> dict[str, Any]:
        """What a seed's figures depend on besides the seed (kept in ``result.json`` to spot a changed recipe)."""
        return {"bundle": str(self.bundle), "configs": list(self.configs),
                "eval_configs": [f.name for f in self.eval_files()], "dataset_dir": str(self.dataset_dir),
                "second_lab_dir": None if self.second_lab_dir is None else str(self.second_lab_dir)}


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


def load_protocol(path: str | os.PathLike) -> StabilityProtocol:
    """Read a protocol JSON file (e.g. ``configs/stability/mil_cpu.json``).

    Keys: ``bundle``, ``dataset_dir``, ``seeds`` (required), ``configs``, ``eval_configs``,
    ``second_lab_dir``, ``overrides``, ``floors``, ``name``, ``description`` and ``root``. Relative paths
    are relative to ``root``, itself relative to the protocol file's folder (default: that folder); a
    protocol kept in ``configs/stability/`` of the project sets ``"root": "../.."``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or a missing, unknown or ill-typed key; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: protocol file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a protocol must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _PROTOCOL_FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} (known: {sorted(_PROTOCOL_FIELDS)})")
    missing = [k for k in ("bundle", "dataset_dir", "seeds") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    try:
        root = (path.parent / _text(data.get("root", "."), "root")).resolve()

        def resolve(key: str) -> Path | None:
            value = data.get(key)
            return None if value is None else (root / _text(value, key)).resolve()

        seeds = data["seeds"]
        if not isinstance(seeds, list):
            raise ValueError(f"seeds must be a list of whole numbers, got {seeds!r}")
        return StabilityProtocol(
            bundle=resolve("bundle"), dataset_dir=resolve("dataset_dir"), seeds=tuple(seeds),
            configs=data.get("configs", ("train.json",)), eval_configs=data.get("eval_configs"),
            second_lab_dir=resolve("second_lab_dir"), floors=Floors.from_mapping(data.get("floors", {})),
            overrides=data.get("overrides", {}), name=_text(data.get("name", path.stem), "name"),
            source=path.resolve(),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def check_overrides(protocol: StabilityProtocol, overrides: Mapping[str, Any]) -> None:
    """Refuse overrides the protocol sets itself, workflow arguments, and ids no config has a place for.

    Raises:
        ValueError: naming the offending ids.
    """
    owned = sorted(set(overrides) & PROTOCOL_KEYS)
    if owned:
        raise ValueError(f"bundle overrides {owned} are set by the protocol per seed (use --seeds / --dataset_dir)")
    workflow = sorted(set(overrides) & WORKFLOW_ARGS)
    if workflow:
        raise ValueError(f"bundle overrides {workflow} select how the bundle runs; the protocol sets them")
    unknown = unknown_overrides(overrides, [protocol.train_files(), protocol.eval_files()])
    if unknown:
        raise ValueError(f"bundle overrides {unknown}: neither the training nor the evaluation config defines them")
