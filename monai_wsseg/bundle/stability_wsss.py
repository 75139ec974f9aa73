"""Judge the WSSS bundle's recipe by its worst seed (protocol ``"kind": "wsss"``, ``scripts/stability.py``).

One seed runs the bundle's phases, in this process, into ``OUT/seed_<s>/``:

1. ``train/``: ``train_cls`` (the PDA classifier: ``models/classifier.pt``, best ``val_cls_auc``, and
   ``validation_cls.csv``), ``pseudo_masks`` (``pseudo/``), ``train_seg`` (DeepLabV3+: ``models/model.pt``,
   best ``val_miou``; ``models/model_last.pt``, the last epoch; ``validation_seg.csv``), each with its config
   list and overrides from the protocol (``configs`` and ``phase_overrides`` per phase: e.g. the CPU overlays,
   and ``width`` for the phases that load the classifier without ``cpu.json``). ``phases.json`` records the
   phases done: a resumed seed goes on with the first phase not done (a phase run again drops what the ones
   after it made; the bundle has no resume within a phase).
2. ``eval_kept/``, ``eval_last/``: the ``evaluate`` phase (Grad-CAM rows of the classifier, the segmenter with
   and without the gate) of ``model.pt`` and ``model_last.pt`` on the home set's ``test`` split; a last epoch
   with the kept weights is not evaluated twice.
3. ``lab2_kept/``: ``model.pt`` on the second lab's ``test`` split (it has no other).
4. ``result.json``: the figures and curves (see :func:`~monai_wsseg.bundle.stability.seed_study` for resuming).

Per-seed figures (:func:`wsss_spec`; IoU, MIoU, FwIoU and ACC as the bundle's evaluation gives them, white
background ignored): ``test_miou``, ``test_fwiou``, ``test_acc``, ``iou_<class>`` (the kept segmenter),
``gate_*`` (the same with the classification gate), ``cam_miou`` (phase 1's Grad-CAM masks of layer bn7),
``last_test_miou``, ``lab2_*``, and from ``validation_seg.csv`` ``best_epoch``, ``min_val_after_warmup``,
``final_val`` (of ``val_miou``), from ``validation_cls.csv`` ``final_cls_auc``. Both validation curves are
kept per epoch (``val_miou``, ``val_cls_auc``) and drawn in ``stability.png``.

Floors (:class:`WSSSFloors`): ``min_test_miou``, ``min_class_iou`` (class name → lowest IoU), ``warmup`` with
``min_val_after_warmup``, ``min_second_lab_miou``. Cheap to import: ``monai`` and ``torch`` are imported by
the functions that need them.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from typing_extensions import override

from monai_wsseg.bundle.definitions import finite_number
from monai_wsseg.bundle.runs import applicable, run_bundle, unknown_overrides
from monai_wsseg.bundle.stability import read_or_run, same_weights, seed_study
from monai_wsseg.bundle.stability_protocol import FloorsBase, ProtocolBase, config_names
from monai_wsseg.bundle.stability_results import (
    FigureSpec,
    SeedResult,
    curve_figures,
    merge_curves,
    read_validation_curve,
)
from monai_wsseg.metrics.tissue import read_scores_table
from monai_wsseg.utils.atomic import write_text_atomically

__all__ = ["CAM_ROW", "PHASES", "WSSS_KEYS", "WSSSFloors", "WSSSProtocol", "run_seed", "wsss_spec"]

logger = logging.getLogger(__name__)

#: The bundle's phases, in the order they run; each is one merged config.
PHASES: tuple[str, ...] = ("train_cls", "pseudo_masks", "train_seg", "evaluate")
_TRAINING = PHASES[:3]
#: ``(run id, workflow type)`` per phase.
_RUN = {"train_cls": ("training", "train"), "pseudo_masks": ("run", "infer"), "train_seg": ("training", "train"),
        "evaluate": ("run", "infer")}

#: Override ids the protocol sets per run (the chain of phases through one output folder rests on them).
WSSS_KEYS = frozenset({"seed", "output_dir", "dataset_dir", "bundle_root", "ckpt_dir", "pseudo_dir", "classifier_path",
                       "segmenter_path", "evaluation_dir", "split"})

#: The evaluation row of phase 1's figure: Grad-CAM masks of the classifier's last layer.
CAM_ROW = "cam:bn7"
SEG_METRIC, CLS_METRIC = "val_miou", "val_cls_auc"
#: ``(file in the training folder, metric)`` of the two validation curves.
_CURVES = (("validation_seg.csv", SEG_METRIC), ("validation_cls.csv", CLS_METRIC))
_EVALUATIONS = ("eval_kept", "eval_last", "lab2_kept")
_RECORD = "phases.json"
_SCORES = ("miou", "fwiou", "acc")
_DEFAULT_CONFIGS = {"train_cls": ("train_cls.json",), "pseudo_masks": ("pseudo_masks.json",),
                    "train_seg": ("train_seg.json",), "evaluate": ("evaluate.json",)}


@dataclass(frozen=True)
class WSSSFloors(FloorsBase):
    """The WSSS bundle's floors (with :class:`~monai_wsseg.bundle.stability_protocol.FloorsBase`'s ``warmup``
    and ``min_val_after_warmup``, on ``val_miou``).

    Attributes:
        min_test_miou: lowest ``test_miou`` (the kept segmenter, no gate).
        min_class_iou: class name → lowest ``iou_<class>`` on the home test split, e.g. ``{"NEC": 0.85}``.
        min_second_lab_miou: lowest ``lab2_miou``.
    """

    min_test_miou: float | None = None
    min_class_iou: Mapping[str, float] = field(default_factory=dict)
    min_second_lab_miou: float | None = None

    _RULES: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("min_test_miou", "test_miou", "≥"), ("min_val_after_warmup", "min_val_after_warmup", "≥"),
        ("min_second_lab_miou", "lab2_miou", "≥"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.min_class_iou, Mapping):  # a protocol file's error: ValueError, as all of them
            raise ValueError(f"floors.min_class_iou must be an object of class name → IoU floor, "
                             f"got {self.min_class_iou!r}")
        object.__setattr__(self, "min_class_iou", {str(c): finite_number(v, f"floors.min_class_iou.{c}")
                                                   for c, v in self.min_class_iou.items()})

    @override
    def rules(self) -> list[tuple[str, str, str, float]]:
        return super().rules() + [(f"min_class_iou.{c}", f"iou_{c}", "≥", v) for c, v in self.min_class_iou.items()]


def wsss_spec(class_names: Sequence[str]) -> FigureSpec:
    """The WSSS study's figures for the bundle's classes (their IoU columns are named after them)."""
    def per_class(prefix: str, title: str) -> dict[str, str]:
        return {f"{prefix}iou_{c}": f"{title}{c} IoU" for c in class_names}

    titles = {"test_miou": "test MIoU", "test_fwiou": "test FwIoU", "test_acc": "test ACC", **per_class("", ""),
              "gate_miou": "gated MIoU", "gate_fwiou": "gated FwIoU", "gate_acc": "gated ACC",
              **per_class("gate_", "gated "), "cam_miou": "CAM bn7 MIoU", "last_test_miou": "last-epoch test MIoU",
              "lab2_miou": "lab 2 MIoU", "lab2_fwiou": "lab 2 FwIoU", "lab2_acc": "lab 2 ACC",
              **per_class("lab2_", "lab 2 "), "best_epoch": "best epoch",
              "min_val_after_warmup": "min val MIoU after epoch {warmup}", "final_val": "final val MIoU",
              "final_cls_auc": "final val class AUC"}
    shown = ("test_miou", *per_class("", ""), "gate_miou", "cam_miou", "last_test_miou", "lab2_miou",
             *per_class("lab2_", ""), "best_epoch", "min_val_after_warmup", "final_val")
    return FigureSpec(
        figures=tuple(titles), titles=titles, key_metric=SEG_METRIC, headline="test_miou", shown=shown,
        panels=(SEG_METRIC, CLS_METRIC),
        description="Test figures: the bundle's evaluation (`evaluate.json`) on the test split, white background "
                    "ignored. *test*: the kept segmenter `model.pt` (best `val_miou`); *gated*: the same with the "
                    "classification gate; *CAM bn7*: phase 1's Grad-CAM masks; *last-epoch*: `model_last.pt`; "
                    "*lab 2*: the kept segmenter on the second lab's test split. Blank: not available (a class "
                    "absent from a split has no IoU).")


@dataclass(frozen=True)
class WSSSProtocol(ProtocolBase):
    """The WSSS bundle's recipe (``kind`` ``"wsss"``) and the seeds it is judged on; see
    :class:`~monai_wsseg.bundle.stability_protocol.ProtocolBase` for the shared fields. ``dataset_dir`` and
    ``second_lab_dir`` are patch sets (``training/``, ``val/{img,mask}``, ``test/{img,mask}``; the second
    lab's ``test/`` only).

    Attributes:
        configs: per phase of :data:`PHASES`, its config files in ``bundle/configs`` (later ones overlay).
        phase_overrides: per phase, bundle overrides it alone gets (e.g. ``{"evaluate": {"width": 0.125}}``);
            ``overrides`` and the command line's come on top, for every phase whose config takes them.
        floors: what every seed must reach.
    """

    configs: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(_DEFAULT_CONFIGS))
    phase_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    floors: WSSSFloors = field(default_factory=WSSSFloors)

    kind: ClassVar[str] = "wsss"
    OWNED_KEYS: ClassVar[frozenset[str]] = WSSS_KEYS
    EXTRA_FIELDS: ClassVar[frozenset[str]] = frozenset({"phase_overrides"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.configs, Mapping) or set(self.configs) != set(PHASES):
            raise ValueError(f"configs must give the config files of each phase {list(PHASES)}, got {self.configs!r}")
        object.__setattr__(self, "configs", {p: config_names(self.configs[p], f"configs.{p}") for p in PHASES})
        extra = self.phase_overrides
        if (not isinstance(extra, Mapping) or set(extra) - set(PHASES)
                or not all(isinstance(v, Mapping) for v in extra.values())):
            raise ValueError(f"phase_overrides must map phases of {list(PHASES)} to objects of bundle overrides, "
                             f"got {extra!r}")
        object.__setattr__(self, "phase_overrides", {p: dict(extra[p]) for p in PHASES if p in extra})

    @classmethod
    @override
    def from_data(cls, data: Mapping[str, Any], common: Mapping[str, Any]) -> WSSSProtocol:
        return cls(**common, configs=data.get("configs", _DEFAULT_CONFIGS),
                   phase_overrides=data.get("phase_overrides", {}),
                   floors=WSSSFloors.from_mapping(data.get("floors", {})))

    def phase_files(self, phase: str) -> list[Path]:
        """The config files of ``phase`` (one of :data:`PHASES`), merged in this order."""
        return [self.config_dir / c for c in self.configs[phase]]

    @override
    def config_sets(self) -> list[list[Path]]:
        return [self.phase_files(p) for p in PHASES]

    def phase_pairs(self, phase: str, overrides: Mapping[str, Any], **own: Any) -> dict[str, Any]:
        """The overrides of one run of ``phase``: its ``phase_overrides``, then ``overrides`` (those its config
        takes), then the run's ``own`` (paths as strings, as the bundle CLI passes them)."""
        pairs = applicable({**self.phase_overrides.get(phase, {}), **overrides}, self.phase_files(phase))
        return {**pairs, "bundle_root": str(self.bundle),
                **{k: str(v) if isinstance(v, Path) else v for k, v in own.items()}}

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        """The bundle's classes (``class_names`` of the evaluation config, or of the protocol's overrides)."""
        names = {**self.phase_overrides.get("evaluate", {}), **self.overrides}.get("class_names")
        if names is None:
            from monai.bundle import ConfigParser

            parser = ConfigParser()
            parser.read_config(f=[str(f) for f in self.phase_files("evaluate")])
            names = parser.get_parsed_content("class_names")
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(c, str) for c in names):
            raise ValueError(f"class_names of the evaluate configs must be a list of names, got {names!r}")
        return tuple(names)

    @override
    def figure_spec(self) -> FigureSpec:
        return wsss_spec(self.class_names)

    def _check_data(self) -> None:
        layouts = ((self.dataset_dir, ("training", "val/img", "val/mask", "test/img", "test/mask"), "dataset_dir"),
                   (self.second_lab_dir, ("test/img", "test/mask"), "second_lab_dir"))
        for root, folders, what in layouts:
            missing = [f for f in folders if root is not None and not (root / f).is_dir()]
            if missing:
                raise FileNotFoundError(f"{root}: not a patch set ({what}): no {', '.join(missing)} folder")
        unknown = sorted(set(self.floors.min_class_iou) - set(self.class_names))
        if unknown:
            raise ValueError(f"floors.min_class_iou: unknown class(es) {unknown} (the bundle's classes: "
                             f"{list(self.class_names)})")
        for phase, extra in self.phase_overrides.items():  # a typo would reach no config and change nothing
            owned = sorted(set(extra) & self.OWNED_KEYS)
            if owned:
                raise ValueError(f"phase_overrides.{phase}: {owned} are set by the protocol per run")
            unknown = unknown_overrides(extra, [self.phase_files(phase)])
            if unknown:
                raise ValueError(f"phase_overrides.{phase}: {unknown}: the phase's configs do not define them")

    @override
    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "kind": self.kind, "configs": {p: list(c) for p, c in self.configs.items()},
                "phase_overrides": self.phase_overrides}


# ---------------------------------------------------------------------------------------------------------
# one seed
# ---------------------------------------------------------------------------------------------------------
def run_seed(protocol: WSSSProtocol, seed: int, output_dir: str | os.PathLike,
             overrides: Mapping[str, Any] | None = None) -> SeedResult:
    """Run and evaluate the bundle's phases for one seed into ``output_dir/seed_<seed>``, or read it back
    from its ``result.json``; a failing seed comes back with status ``failed`` (see
    :func:`~monai_wsseg.bundle.stability.seed_study`)."""
    return seed_study(protocol, seed, output_dir, overrides, _wsss_seed)


def _run_phase(protocol: WSSSProtocol, phase: str, overrides: Mapping[str, Any], **own: Any) -> None:
    run_id, workflow_type = _RUN[phase]
    run_bundle(protocol.phase_files(phase), run_id, protocol.phase_pairs(phase, overrides, **own),
               meta_file=protocol.meta_file, workflow_type=workflow_type)


def _fresh(phase: str, train_dir: Path) -> None:
    """Take away what an earlier, unfinished run of ``phase`` (or a phase it rests on) left."""
    if phase == "train_cls":  # everything in the folder came from the classifier it replaces
        shutil.rmtree(train_dir, ignore_errors=True)
    elif phase == "train_seg":  # a validation table keeps earlier rows; an old last epoch would pass for this one's
        for name in ("models/model.pt", "models/model_last.pt", "validation_seg.csv"):
            (train_dir / name).unlink(missing_ok=True)
    # pseudo_masks: the job skips the masks already written, by this same classifier


def _read_record(path: Path) -> tuple[list[str], dict[str, float]]:
    """``(phases done, seconds per phase over all attempts)`` of ``phases.json``; nothing when unreadable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        done = [p for p in record.get("done", []) if p in _TRAINING]
        return done, {str(k): float(v) for k, v in record.get("seconds", {}).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return [], {}


def _train(protocol: WSSSProtocol, seed: int, seed_dir: Path, overrides: Mapping[str, Any]) -> float:
    """Run the training phases not done yet, in order, into ``seed_dir/train``; the seconds spent on all of
    them (over every attempt)."""
    record = seed_dir / _RECORD
    done_before, seconds = _read_record(record)
    done = list(itertools.takewhile(lambda p: p in done_before, _TRAINING))  # each phase rests on those before
    train_dir = seed_dir / "train"
    for phase in _TRAINING[len(done):]:
        _fresh(phase, train_dir)
        for name in _EVALUATIONS:  # figures of earlier training would be stale
            (seed_dir / name / "evaluation.csv").unlink(missing_ok=True)
        logger.info("seed %d: %s into %s", seed, phase, train_dir)
        start = time.perf_counter()
        try:
            _run_phase(protocol, phase, overrides, seed=seed, output_dir=train_dir, dataset_dir=protocol.dataset_dir)
            done.append(phase)
        finally:  # a retried phase adds to the time already spent
            seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start
            write_text_atomically(record, json.dumps({"done": done, "seconds": seconds}, indent=2) + "\n")
    return sum(seconds.get(p, 0.0) for p in _TRAINING)


def _evaluate(protocol: WSSSProtocol, segmenter: Path, out_dir: Path, dataset_dir: Path, train_dir: Path,
              overrides: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The rows of ``evaluation.csv`` of ``segmenter`` (and the seed's classifier) on ``dataset_dir``'s test
    split, read back when ``out_dir`` holds them."""
    def run() -> None:
        _run_phase(protocol, "evaluate", overrides, output_dir=train_dir, dataset_dir=dataset_dir,
                   segmenter_path=segmenter, evaluation_dir=out_dir, split="test")

    return read_or_run(out_dir / "evaluation.csv", read_scores_table, run)


def _take(result: SeedResult, rows: Mapping[str, Mapping[str, float]], row: str, prefix: str, iou_prefix: str,
          classes: Sequence[str]) -> None:
    """Copy ``row``'s MIoU, FwIoU, ACC (as ``<prefix><score>``) and IoUs (``<iou_prefix>iou_<class>``) into
    the figures the study keeps."""
    values = rows.get(row)
    if values is None:
        result.note(f"no {row!r} row in the evaluation: its figures are not available")
        return
    found = {f"{prefix}{s}": values.get(s, math.nan) for s in _SCORES}
    found.update({f"{iou_prefix}iou_{c}": values.get(f"iou_{c}", math.nan) for c in classes})
    result.figures.update({k: v for k, v in found.items() if k in result.figures})


def _read_curves(result: SeedResult, train_dir: Path, warmup: int) -> None:
    curves = {}
    for name, metric in _CURVES:
        if (train_dir / name).is_file():
            curves[metric] = read_validation_curve(train_dir / name)
        else:
            result.note(f"no {name} in {train_dir}: its validation curve is not available")
    result.figures.update(curve_figures(curves.get(SEG_METRIC, {}), warmup, key=SEG_METRIC))
    cls_auc = curves.get(CLS_METRIC, {}).get(CLS_METRIC, [])
    result.figures["final_cls_auc"] = cls_auc[-1] if cls_auc else math.nan
    result.curve = merge_curves(*curves.values())


def _wsss_seed(protocol: WSSSProtocol, result: SeedResult, seed_dir: Path, overrides: dict[str, Any]) -> None:
    result.train_seconds = _train(protocol, result.seed, seed_dir, overrides)
    train_dir = seed_dir / "train"
    kept, last = train_dir / "models" / "model.pt", train_dir / "models" / "model_last.pt"
    if not kept.is_file():
        raise FileNotFoundError(f"{kept}: phase-3 training wrote no kept checkpoint (did validation run?)")
    _read_curves(result, train_dir, protocol.floors.warmup)

    start = time.perf_counter()
    classes = protocol.class_names
    rows = _evaluate(protocol, kept, seed_dir / "eval_kept", protocol.dataset_dir, train_dir, overrides)
    _take(result, rows, "segmentation", "test_", "", classes)
    _take(result, rows, "segmentation+gate", "gate_", "gate_", classes)
    result.figures["cam_miou"] = rows.get(CAM_ROW, {}).get("miou", math.nan)
    if not last.is_file():
        result.note(f"no {last.name} in {last.parent}: last_test_miou not available")
    elif same_weights(kept, last):  # the best epoch was the last: same weights, same figures
        result.note("the last epoch is the kept one: not evaluated again", warn=False)
        result.figures["last_test_miou"] = result.figures["test_miou"]
    else:
        last_rows = _evaluate(protocol, last, seed_dir / "eval_last", protocol.dataset_dir, train_dir, overrides)
        result.figures["last_test_miou"] = last_rows.get("segmentation", {}).get("miou", math.nan)
    if protocol.second_lab_dir is not None:
        lab2 = _evaluate(protocol, kept, seed_dir / "lab2_kept", protocol.second_lab_dir, train_dir, overrides)
        _take(result, lab2, "segmentation", "lab2_", "lab2_", classes)
    result.eval_seconds = time.perf_counter() - start
