"""Judge a training recipe by its worst seed: train a bundle once per seed, evaluate what each run keeps.

One good run says little about a recipe (bundle + config overlays + cohort): another seed may select a
worse checkpoint, collapse after warm-up, or not carry over to another lab. A :class:`StabilityProtocol`
names the recipe, the seeds and the floors every seed must clear; :func:`run_stability` runs it, in this
process, into ``OUT/seed_<s>/`` per seed:

1. ``train/``: the bundle's training with ``seed``, ``output_dir`` and ``dataset_dir`` set. A training run
   writes ``models/model.pt`` (best epoch by ``val_auc``, the pixel AUC against expert masks),
   ``models/model_label.pt`` (best epoch by ``val_label_score``, a criterion from slide labels only),
   ``models/checkpoint_epoch=N.pt`` (the last epoch) and ``validation.csv`` (one row per validation epoch).
2. ``eval_kept/``, ``eval_last/``, ``eval_label/``: the bundle's evaluation (``inference.json`` + profile
   overlays + ``evaluate.json``) of those three checkpoints on the home cohort. A checkpoint whose weights
   equal one evaluated already (the best epoch was the last, or both criteria chose the same epoch) is
   not evaluated twice. When the training keeps a weight average (``ema`` in the checkpoint), the last
   epoch is evaluated with the average, as validation saw it and as ``model.pt`` holds it.
3. ``lab2_kept/``: the kept checkpoint on the second lab's cohort (all of its slides in ``test``, no
   ``val`` split), thresholded at the home cohort's validation threshold; the AUC needs none.
4. ``result.json``: the seed's figures and validation curve. A seed with one is not run again; one
   without resumes where it stopped: an unfinished training through the bundle's own checkpoint resume
   (``trained.json`` marks a finished one), evaluations whose ``evaluation.csv`` exists are read back.

Per-seed figures (:data:`FIGURES`); "test AUC" is the pixel AUC pooled over the tissue cells of the test
slides (``auc_without_background`` of the ``pooled`` row of ``evaluation.csv``):

* ``kept_test_auc``, ``last_test_auc``, ``label_test_auc``: test AUC of the kept / last-epoch /
  label-chosen checkpoint;
* ``selection_gap``: ``|kept_test_auc - label_test_auc|``, what choosing the checkpoint without masks costs;
* ``lab2_auc``: test AUC of the kept checkpoint on the second lab;
* ``best_epoch``, ``min_val_after_warmup`` (lowest ``val_auc`` of the epochs after ``warmup``) and
  ``final_val`` (``val_auc`` of the last epoch), from ``validation.csv``.

A training run of a bundle that writes no ``model_label.pt`` or ``validation.csv`` still gives the other
figures: the missing ones are blank, with a warning. Floors are applied when the tables are written, not
stored, so a rerun with other floors judges the same runs again without training.

Outputs in ``OUT``: ``stability.csv`` and ``stability.md`` (a row per seed, then median / min / max rows)
and ``stability.png`` (validation curves of every seed), rewritten atomically after each seed.

This module runs the MIL bundle, and holds what every kind of study shares: :func:`run_stability` (seeds,
floors, tables), :func:`seed_study` (a seed read back from its ``result.json``, or run with its failure
caught) and :func:`read_or_run` (an evaluation read back when its table exists). The WSSS bundle's seeds are
run by :mod:`~monai_wsseg.bundle.stability_wsss` (protocol ``"kind": "wsss"``). The protocol is read in
:mod:`~monai_wsseg.bundle.stability_protocol`, a seed's figures are held and judged in
:mod:`~monai_wsseg.bundle.stability_results`, and the tables and figure are written by
:mod:`~monai_wsseg.bundle.stability_tables`. Every public name of those is importable from here too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from monai_wsseg.bundle.runs import applicable, one_line, run_bundle
from monai_wsseg.bundle.stability_protocol import (
    Floors,
    ProtocolBase,
    StabilityProtocol,
    check_overrides,
    load_protocol,
    parse_seeds,
)
from monai_wsseg.bundle.stability_results import (
    FIGURES,
    FigureSpec,
    SeedResult,
    StabilityResults,
    check_floors,
    curve_figures,
    nan_float,
    read_pooled,
    read_validation_curve,
)
from monai_wsseg.bundle.stability_tables import (
    TABLE_COLUMNS,
    markdown_table,
    plot_curves,
    summarize,
    write_tables,
)
from monai_wsseg.utils.atomic import write_atomically, write_text_atomically

__all__ = [
    "FIGURES", "TABLE_COLUMNS", "FigureSpec", "Floors", "SeedResult", "StabilityProtocol", "StabilityResults",
    "check_floors", "check_overrides", "curve_figures", "load_protocol", "markdown_table", "parse_seeds",
    "plot_curves", "read_or_run", "read_validation_curve", "run_seed", "run_stability", "same_weights",
    "seed_study", "summarize", "write_tables",
]

logger = logging.getLogger(__name__)

#: Per-seed folders of the evaluations.
EVALUATIONS: tuple[str, ...] = ("eval_kept", "eval_last", "eval_label", "lab2_kept")


T = TypeVar("T")


def same_weights(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold the same network weights (then one evaluation serves both)."""
    import torch

    from monai_wsseg.networks.checkpoint import read_state_dict

    wa, wb = read_state_dict(a), read_state_dict(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def read_or_run(table: Path, read: Callable[[Path], T], run: Callable[[], object]) -> T:
    """``read(table)`` when an earlier run wrote it, else ``run()`` (which writes it) and then read it: an
    evaluation of a resumed seed is not done twice."""
    if table.is_file():
        try:
            return read(table)
        except (OSError, ValueError) as exc:  # unreadable: evaluate again rather than report nothing
            logger.warning("%s: %s; evaluating again", table, one_line(exc))
    run()
    return read(table)


def seed_study(protocol: ProtocolBase, seed: int, output_dir: str | os.PathLike,
               overrides: Mapping[str, Any] | None,
               body: Callable[[Any, SeedResult, Path, dict[str, Any]], None]) -> SeedResult:
    """One seed of any kind of study, in ``output_dir/seed_<seed>``: read back from its ``result.json``, or
    ``body(protocol, result, seed_dir, overrides)`` fills ``result`` (status ``done``, saved as ``result.json``).

    ``overrides`` are the protocol's with the caller's on top. Never raises for a failing run: the result's
    status is then ``failed`` and its error the one-line reason (a study of many hours must not end at one
    broken seed); without a ``result.json`` the next call runs the seed again, where ``body`` resumes.
    """
    overrides = {**protocol.overrides, **(overrides or {})}
    seed_dir = Path(output_dir) / f"seed_{seed}"
    result_file = seed_dir / "result.json"
    settings = {**protocol.settings(), "overrides": overrides}
    names = protocol.figure_spec().figures
    if result_file.is_file():
        try:
            result = SeedResult.from_json(result_file.read_text(encoding="utf-8"), names)
            if json.loads(json.dumps(settings, default=str)) != result.settings:
                logger.warning("seed %d: %s was written with other settings; delete %s to run it again",
                               seed, result_file, seed_dir)
            logger.info("seed %d: finished before, read back from %s", seed, result_file)
            return result
        except (OSError, ValueError) as exc:
            logger.warning("%s: %s; running the seed again", result_file, one_line(exc))

    result = SeedResult(seed, figures=dict.fromkeys(names, math.nan), settings=settings)
    try:
        seed_dir.mkdir(parents=True, exist_ok=True)
        body(protocol, result, seed_dir, overrides)
        result.status = "done"
        write_text_atomically(result_file, result.to_json())
    except Exception as exc:  # one failing seed must not end the study
        logger.exception("seed %d failed", seed)
        result.status, result.error = "failed", one_line(exc)
    return result


def _last_weights(ckpt: Path, seed_dir: Path) -> Path:
    """The weights of the last epoch that validation saw: the checkpoint's ``model``, or, when the training
    kept a weight average (an ``ema`` entry that was updated), the average, which ``model.pt`` holds too;
    written to ``seed_dir/last_ema.pt`` then, so the evaluation bundle can load it."""
    import torch

    from monai_wsseg.networks.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(ckpt, what="a training checkpoint")
    ema = checkpoint.get("ema") if isinstance(checkpoint, dict) else None
    if not (isinstance(ema, dict) and isinstance(ema.get("module"), dict) and ema.get("updates")):
        return ckpt
    target = write_atomically(seed_dir / "last_ema.pt", lambda tmp: torch.save(ema["module"], tmp))
    logger.info("%s: evaluating its weight average (as validation saw it), saved as %s", ckpt.name, target)
    return target


def _train(protocol: StabilityProtocol, seed: int, train_dir: Path, overrides: Mapping[str, Any]) -> None:
    files = protocol.train_files()
    pairs = {**applicable(overrides, files), "bundle_root": str(protocol.bundle), "seed": seed,
             "output_dir": str(train_dir), "dataset_dir": str(protocol.dataset_dir)}
    run_bundle(files, "training", pairs, meta_file=protocol.meta_file, workflow_type="train")


def _evaluate(protocol: StabilityProtocol, ckpt: Path, out_dir: Path, dataset_dir: Path,
              overrides: Mapping[str, Any], threshold: float | None = None) -> tuple[float, float]:
    """``(test AUC, threshold)`` of ``ckpt`` on ``dataset_dir``, read back when ``out_dir`` holds them."""
    def run() -> None:
        files = protocol.eval_files()
        pairs: dict[str, Any] = {**applicable(overrides, files), "bundle_root": str(protocol.bundle),
                                 "dataset_dir": str(dataset_dir), "output_dir": str(out_dir), "ckpt_path": str(ckpt)}
        if threshold is not None and math.isfinite(threshold):  # a cohort without a val split cannot choose one
            pairs["evaluation#threshold"] = float(threshold)
        run_bundle(files, "run", pairs, meta_file=protocol.meta_file, workflow_type="infer")

    return read_or_run(out_dir / "evaluation.csv", read_pooled, run)


def run_seed(protocol: StabilityProtocol, seed: int, output_dir: str | os.PathLike,
             overrides: Mapping[str, Any] | None = None) -> SeedResult:
    """Train and evaluate one seed into ``output_dir/seed_<seed>``, or read it back from its ``result.json``.

    Never raises for a failing run: the result's status is then ``failed`` and its error the one-line
    reason (a study of many hours must not end at one broken seed).
    """
    return seed_study(protocol, seed, output_dir, overrides, _mil_seed)


def _mil_seed(protocol: StabilityProtocol, result: SeedResult, seed_dir: Path, overrides: dict[str, Any]) -> None:
    from monai_wsseg.engines.checkpoints import latest_checkpoint

    seed = result.seed
    train_dir = seed_dir / "train"
    trained = seed_dir / "trained.json"
    if trained.is_file():
        result.train_seconds = nan_float(json.loads(trained.read_text(encoding="utf-8")).get("train_seconds"))
        logger.info("seed %d: training finished before; evaluating", seed)
    else:
        for name in EVALUATIONS:  # figures of an earlier, unfinished training would be stale
            (seed_dir / name / "evaluation.csv").unlink(missing_ok=True)
        logger.info("seed %d: training into %s", seed, train_dir)
        start = time.perf_counter()
        _train(protocol, seed, train_dir, overrides)
        result.train_seconds = time.perf_counter() - start
        write_text_atomically(trained, json.dumps({"seed": seed, "train_seconds": result.train_seconds}) + "\n")

    models = train_dir / "models"
    kept, label = models / "model.pt", models / "model_label.pt"
    last = latest_checkpoint(models)
    if not kept.is_file():
        raise FileNotFoundError(f"{kept}: training wrote no kept checkpoint (did validation run?)")

    curve_file = train_dir / "validation.csv"
    if curve_file.is_file():
        result.curve = read_validation_curve(curve_file)
    else:
        result.note(f"no {curve_file.name} in {train_dir}: best_epoch, min_val_after_warmup and final_val "
                    "not available")
    result.figures.update(curve_figures(result.curve, protocol.floors.warmup))

    start = time.perf_counter()
    home = protocol.dataset_dir
    kept_auc, threshold = _evaluate(protocol, kept, seed_dir / "eval_kept", home, overrides)
    result.figures["kept_test_auc"] = kept_auc
    evaluated: list[tuple[Path, str, float]] = [(kept, "kept", kept_auc)]

    def home_auc(ckpt: Path, what: str, folder: str) -> float:
        # the best epoch is often the last, and both criteria often choose the same epoch: same weights,
        # same figures, so evaluate them once
        for other, other_what, auc in evaluated:
            if same_weights(other, ckpt):
                result.note(f"the {what} checkpoint has the {other_what} one's weights: not evaluated again",
                            warn=False)
                return auc
        auc = _evaluate(protocol, ckpt, seed_dir / folder, home, overrides)[0]
        evaluated.append((ckpt, what, auc))
        return auc

    if last is None:
        result.note(f"no last-epoch checkpoint in {models}: last_test_auc not available")
    else:
        result.figures["last_test_auc"] = home_auc(_last_weights(Path(last), seed_dir), "last-epoch", "eval_last")
    if not label.is_file():
        result.note(f"no {label.name} in {models}: label_test_auc and selection_gap not available")
    else:
        result.figures["label_test_auc"] = home_auc(label, "label-chosen", "eval_label")
        result.figures["selection_gap"] = abs(kept_auc - result.figures["label_test_auc"])
    if protocol.second_lab_dir is not None:
        result.figures["lab2_auc"] = _evaluate(protocol, kept, seed_dir / "lab2_kept", protocol.second_lab_dir,
                                               overrides, threshold=threshold)[0]
    result.eval_seconds = time.perf_counter() - start


def _warn_unsplit(protocol: ProtocolBase) -> None:
    """Slides without a split get one drawn with the training seed, but the evaluation draws with its own
    default: with such a cohort a seed's test slides may have been its training slides."""
    if not isinstance(protocol, StabilityProtocol):  # patch sets come split into folders
        return
    from monai_wsseg.datasets.discovery import find_manifest_or_slides

    try:
        records = find_manifest_or_slides(protocol.dataset_dir, assign_splits=False, check_files=False)
    except Exception as exc:  # the training reports a broken cohort with its own message
        logger.debug("cohort check skipped: %s", one_line(exc))
        return
    unsplit = sum(1 for r in records if r.split is None)
    if unsplit:
        logger.warning("%s: %d slide(s) without a split; the split then depends on the seed, and evaluation may "
                       "not use the training's: give every slide a split in the manifest", protocol.dataset_dir,
                       unsplit)


def _seed_runner(protocol: ProtocolBase) -> Callable[..., SeedResult]:
    if isinstance(protocol, StabilityProtocol):
        return run_seed
    from monai_wsseg.bundle import (
        stability_wsss,  # imported here: it builds on this module
    )

    return stability_wsss.run_seed


def run_stability(protocol: ProtocolBase, output_dir: str | os.PathLike,
                  overrides: Mapping[str, Any] | None = None, *,
                  on_result: Callable[[int, SeedResult, float], None] | None = None) -> StabilityResults:
    """Run every seed of ``protocol`` into ``output_dir`` (resuming), judge them against its floors, and
    write ``stability.csv``, ``stability.md`` and ``stability.png`` after each seed.

    Args:
        protocol: the recipe, seeds and floors (any kind: MIL or WSSS).
        output_dir: the study's folder (created).
        overrides: bundle overrides on top of the protocol's own.
        on_result: called as ``on_result(index, result, seconds)`` after each seed (progress lines).

    Raises:
        FileNotFoundError: a folder or config file of the protocol is missing (see :meth:`ProtocolBase.check`).
    """
    protocol.check()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _warn_unsplit(protocol)
    extra = {**protocol.overrides, **(overrides or {})}
    note = (f"Bundle `{protocol.bundle.name}`, configs {protocol.settings()['configs']}; "
            f"data `{protocol.dataset_dir}`"
            + (f", second lab `{protocol.second_lab_dir}`" if protocol.second_lab_dir else ", no second lab")
            + ("; overrides " + ", ".join(f"`{k}={v}`" for k, v in extra.items()) if extra else "") + ".")
    spec = protocol.figure_spec()
    runner = _seed_runner(protocol)
    results = StabilityResults([], protocol.floors, spec=spec)
    for k, seed in enumerate(protocol.seeds):
        start = time.perf_counter()
        result = check_floors(runner(protocol, seed, out, overrides), protocol.floors)
        results.seeds.append(result)
        if on_result is not None:
            on_result(k, result, time.perf_counter() - start)
        results.csv, results.markdown = write_tables(results.seeds, out, protocol.floors, title=protocol.name,
                                                     note=note, spec=spec)
        results.plot = plot_curves(results.seeds, out / "stability.png", protocol.floors, title=protocol.name,
                                   spec=spec)
    return results
