"""Paper A's (α, β) benchmark: train and evaluate the MIL bundle for each configuration, tabulate and plot.

The paper (Lerousseau et al., MICCAI 2020, §3.1 and §4) samples the framework space
F = {(α, β): α > 0, β ≥ 0, α + β ≤ 1} with a step of 0.2, giving 15 configurations, trains one model per
configuration and reports, on the test split, the pixel AUC (Table 1, with and without background) and
precision / recall / F1 at a threshold chosen on the validation split (Fig. 2, one α×β matrix per figure).
α and β are fractions of a bag's patches.

The grid, the bundle, its config files per profile and the ``--quick`` settings are a run definition,
``configs/sweep/alpha_beta.json``, read by :func:`load_sweep` (keys: see :class:`SweepDefinition`).

For each configuration the bundle runs exactly as ``python -m monai.bundle run`` would, but in this process
(:func:`~monai_wsseg.bundle.runs.run_bundle`; ``import monai`` costs seconds, 30 bundle runs would pay it
30 times):

1. training: the profile's ``train`` configs with ``alpha``, ``beta`` and ``output_dir=OUT/a<α>_b<β>``;
2. evaluation: the profile's ``evaluate`` configs with ``ckpt_path`` = that run's ``models/model.pt`` (the
   best validation AUC), writing ``OUT/a<α>_b<β>/evaluation/evaluation.{csv,md}``.

After each configuration ``OUT/sweep.csv``, ``OUT/sweep.md`` and ``OUT/sweep.png`` are rewritten
(:mod:`.sweep_tables`). A configuration whose ``evaluation/evaluation.csv`` exists is read back, not run
again; an interrupted one resumes from its last training checkpoint (the bundle's own resume); one that
fails is logged and recorded and does not stop the others.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_wsseg.bundle.definitions import (
    check_keys,
    finite_number,
    keyword_names,
    object_of,
    profile_configs,
    read_definition,
    resolve_path,
)
from monai_wsseg.bundle.runs import WORKFLOW_ARGS, applicable, one_line, run_bundle, unknown_overrides
from monai_wsseg.mil.sweep_tables import ConfigResult, in_framework, plot_matrix, read_evaluation, write_tables
from monai_wsseg.utils.atomic import write_text_atomically

__all__ = ["SWEEP_KEYS", "SweepDefinition", "check_applies", "check_sweep_overrides", "config_name",
           "evaluate_config", "load_sweep", "parse_configs", "quick_cohort", "run_config", "run_sweep", "train_config"]

#: Override keys the sweep sets itself per configuration (or that select how the bundle is run).
SWEEP_KEYS = frozenset({"alpha", "beta", "output_dir", "ckpt_path", "dataset_dir", "bundle_root"})

#: Steps of a sweep run: the profile's config files for each come from the definition's ``configs``.
STEPS: tuple[str, ...] = ("train", "evaluate")

#: Keys of a sweep definition file, and of its ``quick`` object.
_KEYS = frozenset({"description", "root", "bundle", "alphas", "betas", "configs", "quick"})
_QUICK_KEYS = frozenset({"cohort", "overrides"})

#: A configuration's own record beside its runs: seconds spent per step (summed over attempts).
TIMING = "sweep_run.json"

logger = logging.getLogger("alpha_beta_sweep")


@dataclass(frozen=True)
class SweepDefinition:
    """An (α, β) sweep: the bundle, the grid and the settings of ``--quick`` (``configs/sweep/*.json``).

    Attributes:
        bundle: the MIL bundle folder (holding ``configs/``).
        alphas: rows of the matrices, fractions in (0, 1], increasing.
        betas: columns of the matrices, fractions in [0, 1), increasing.
        configs: ``{profile: {"train" | "evaluate": config files}}``, later files overlaying earlier ones.
        quick_cohort: keyword arguments of :func:`monai_wsseg.synthetic.generator.make_cohort` for the
            synthetic cohort of ``--quick`` (``size`` as ``[width, height]`` px at 0.5 µm/px).
        quick_overrides: bundle overrides of ``--quick`` (a CPU smoke benchmark, not the paper's setting).
        source: the definition file, when read from one.
    """

    bundle: Path
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    configs: Mapping[str, Mapping[str, tuple[Path, ...]]]
    quick_cohort: Mapping[str, Any] = field(default_factory=dict)
    quick_overrides: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def config_dir(self) -> Path:
        """The bundle's ``configs/`` folder."""
        return self.bundle / "configs"

    @property
    def meta_file(self) -> Path:
        """The bundle's ``configs/metadata.json``."""
        return self.config_dir / "metadata.json"

    def grid(self) -> list[tuple[float, float]]:
        """The configurations of the grid inside F, α-major: (0.2, 0), (0.2, 0.2), …, (1.0, 0) for the paper's."""
        return [(a, b) for a in self.alphas for b in self.betas if in_framework(a, b)]

    def train_files(self, profile: str) -> list[Path]:
        """Config files of the training step under ``profile`` (``"cpu"`` or ``"gpu"``)."""
        return list(self.configs[profile]["train"])

    def eval_files(self, profile: str) -> list[Path]:
        """Config files of the evaluation step under ``profile``."""
        return list(self.configs[profile]["evaluate"])


def _fractions(value: Any, key: str, low_open: bool) -> tuple[float, ...]:
    """Increasing distinct fractions: in (0, 1] when ``low_open`` (α), else in [0, 1) (β)."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key}: must be a non-empty list of fractions, got {value!r}")
    out = tuple(round(finite_number(v, f"{key}[{i}]"), 6) for i, v in enumerate(value))
    for i, v in enumerate(out):
        if not (0 < v <= 1 if low_open else 0 <= v < 1):
            raise ValueError(f"{key}[{i}]: must be in {'(0, 1]' if low_open else '[0, 1)'}, got {v:g}")
    if list(out) != sorted(set(out)):
        raise ValueError(f"{key}: must be increasing, without repeats, got {list(out)}")
    return out


def load_sweep(path: str | Path) -> SweepDefinition:
    """Read a sweep definition (e.g. ``configs/sweep/alpha_beta.json``).

    Keys: ``bundle``, ``alphas``, ``betas``, ``configs`` (required; ``configs`` gives, for profiles ``cpu``
    and ``gpu``, the ``train`` and ``evaluate`` config file lists), ``quick`` (``cohort``: keyword arguments
    of ``make_cohort``; ``overrides``: bundle overrides), ``root`` and ``description``. Paths are relative
    to ``root``, itself relative to the file's folder.

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file and the key: not JSON, a missing, unknown or ill-typed key, a
            bundle or config file that is not there, or a grid with no configuration inside F.
    """
    data, root = read_definition(path, what="sweep definition")
    try:
        check_keys(data, _KEYS, ("bundle", "alphas", "betas", "configs"))
        bundle = resolve_path(root, data["bundle"], "bundle")
        if not (bundle / "configs").is_dir():
            raise ValueError(f"bundle: {bundle}: bundle folder not found (no configs/ in it)")
        alphas = _fractions(data["alphas"], "alphas", low_open=True)
        betas = _fractions(data["betas"], "betas", low_open=False)
        if not any(in_framework(a, b) for a in alphas for b in betas):
            raise ValueError("alphas, betas: no configuration with alpha + beta <= 1")
        configs = profile_configs(data["configs"], bundle / "configs", STEPS)
        quick = object_of(data.get("quick", {}), "quick")
        check_keys(quick, _QUICK_KEYS, (), "quick")
        cohort = dict(object_of(quick.get("cohort", {}), "quick.cohort"))
        from monai_wsseg.synthetic.generator import make_cohort

        check_keys(cohort, keyword_names(make_cohort, ["out_dir"]), (), "quick.cohort")
        if "size" in cohort:
            size = cohort["size"]
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
                raise ValueError(f"quick.cohort.size: must be [width, height] in pixels, got {size!r}")
            cohort["size"] = tuple(size)
        overrides = object_of(quick.get("overrides", {}), "quick.overrides")
        owned = sorted(set(overrides) & (SWEEP_KEYS | WORKFLOW_ARGS))
        if owned:
            raise ValueError(f"quick.overrides: {owned} are set by the sweep itself")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return SweepDefinition(bundle=bundle, alphas=alphas, betas=betas, configs=configs, quick_cohort=cohort,
                           quick_overrides=dict(overrides), source=Path(path).resolve())


# ---------------------------------------------------------------------------------------------------------
# the configurations
# ---------------------------------------------------------------------------------------------------------
def parse_configs(text: str) -> list[tuple[float, float]]:
    """``"0.2,0.2;1.0,0"`` → ``[(0.2, 0.2), (1.0, 0.0)]``; every pair must be in F, none repeated.

    Raises:
        ValueError: naming ``--configs`` and the offending part.
    """
    out: list[tuple[float, float]] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        try:
            a, b = (float(v) for v in part.split(","))
        except ValueError:
            raise ValueError(f"--configs: {part!r} is not 'alpha,beta'") from None
        a, b = round(a, 6), round(b, 6)
        if not in_framework(a, b):
            raise ValueError(f"--configs: ({a:g}, {b:g}) is outside the framework (alpha > 0, beta >= 0, "
                             "alpha + beta <= 1)")
        if (a, b) in out:
            raise ValueError(f"--configs: ({a:g}, {b:g}) is given twice")
        out.append((a, b))
    if not out:
        raise ValueError("--configs: no configuration given")
    return out


def config_name(alpha: float, beta: float) -> str:
    """Folder of one configuration: ``a0.2_b0.0``."""
    on_tenths = round(alpha, 1) == alpha and round(beta, 1) == beta
    return f"a{alpha:.1f}_b{beta:.1f}" if on_tenths else f"a{alpha:g}_b{beta:g}"


def check_sweep_overrides(extra: Mapping[str, Any]) -> None:
    """Refuse bundle overrides the sweep sets itself, and workflow arguments.

    Raises:
        ValueError: naming the offending ids.
    """
    owned = sorted(set(extra) & SWEEP_KEYS)
    if owned:
        raise ValueError(f"bundle overrides {owned} are set by the sweep (use --dataset_dir / --output_dir / "
                         "--configs)")
    workflow = sorted(set(extra) & WORKFLOW_ARGS)
    if workflow:
        raise ValueError(f"bundle overrides {workflow} select how the bundle runs; the sweep sets them")


def check_applies(definition: SweepDefinition, overrides: Mapping[str, Any], profile: str) -> None:
    """Refuse an override that neither training nor evaluation accepts (a typo would otherwise surface as a
    KeyError in every configuration, or add an id that nothing reads).

    Raises:
        ValueError: naming the unknown ids.
    """
    unknown = unknown_overrides(overrides, [definition.train_files(profile), definition.eval_files(profile)])
    if unknown:
        raise ValueError(f"bundle overrides {unknown}: neither the training nor the evaluation config defines "
                         "them (or their parent id)")


def quick_cohort(definition: SweepDefinition, folder: Path) -> Path:
    """The synthetic cohort of ``--quick`` in ``folder``, made from ``definition.quick_cohort`` unless its
    ``manifest.csv`` is there already; returns ``folder``."""
    if not (folder / "manifest.csv").is_file():
        from monai_wsseg.synthetic.generator import make_cohort

        logger.info("making a synthetic cohort in %s", folder)
        make_cohort(folder, **definition.quick_cohort)
    return folder


# ---------------------------------------------------------------------------------------------------------
# the bundle, in this process
# ---------------------------------------------------------------------------------------------------------
def train_config(definition: SweepDefinition, alpha: float, beta: float, run_dir: Path,
                 overrides: Mapping[str, Any], profile: str) -> None:
    """Train one configuration into ``run_dir`` (resuming from its last checkpoint when there is one)."""
    files = definition.train_files(profile)
    pairs = {**applicable(overrides, files), "alpha": alpha, "beta": beta, "output_dir": str(run_dir)}
    run_bundle(files, "training", pairs, meta_file=definition.meta_file, workflow_type="train")


def evaluate_config(definition: SweepDefinition, run_dir: Path, overrides: Mapping[str, Any], profile: str) -> None:
    """Evaluate ``run_dir/models/model.pt`` into ``run_dir/evaluation``.

    Raises:
        FileNotFoundError: training wrote no best model.
    """
    ckpt = run_dir / "models" / "model.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: training wrote no best model (did validation run?)")
    files = definition.eval_files(profile)
    pairs = {**applicable(overrides, files), "output_dir": str(run_dir / "evaluation"), "ckpt_path": str(ckpt)}
    run_bundle(files, "run", pairs, meta_file=definition.meta_file, workflow_type="infer")


def _read_timing(run_dir: Path) -> dict[str, float]:
    try:
        return json.loads((run_dir / TIMING).read_text())
    except (OSError, ValueError):
        return {}


def _write_timing(run_dir: Path, timing: Mapping[str, Any]) -> None:
    write_text_atomically(run_dir / TIMING, json.dumps(dict(timing), indent=2) + "\n")


def run_config(definition: SweepDefinition, alpha: float, beta: float, out: Path, overrides: Mapping[str, Any],
               profile: str) -> ConfigResult:
    """Train and evaluate one configuration in ``out/<config_name>``, or read it back when its
    ``evaluation/evaluation.csv`` exists. A failure is recorded in the result (status ``"failed"``)."""
    run_dir = out / config_name(alpha, beta)
    result = ConfigResult(alpha, beta)
    evaluation = run_dir / "evaluation" / "evaluation.csv"
    timing = _read_timing(run_dir)
    if evaluation.is_file():
        try:
            result.figures = read_evaluation(evaluation)
            result.status = "resumed"
            result.train_seconds = float(timing.get("train_seconds", math.nan))
            result.eval_seconds = float(timing.get("eval_seconds", math.nan))
            return result
        except (OSError, ValueError) as exc:  # unreadable: evaluate again rather than report nothing
            logger.warning("%s: %s; evaluating again", evaluation, one_line(exc))
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        try:
            train_config(definition, alpha, beta, run_dir, overrides, profile)
        finally:  # a resumed training adds to the time already spent, so the column is the total cost
            timing["train_seconds"] = float(timing.get("train_seconds", 0.0)) + time.perf_counter() - start
            _write_timing(run_dir, {"alpha": alpha, "beta": beta, **timing})
        start = time.perf_counter()
        try:
            evaluate_config(definition, run_dir, overrides, profile)
        finally:
            timing["eval_seconds"] = float(timing.get("eval_seconds", 0.0)) + time.perf_counter() - start
            _write_timing(run_dir, {"alpha": alpha, "beta": beta, **timing})
        result.figures = read_evaluation(evaluation)
        result.status = "done"
    except Exception as exc:  # one failing configuration must not end a sweep of many hours
        logger.exception("%s failed", run_dir.name)
        result.status, result.error = "failed", one_line(exc)
    result.train_seconds = float(timing.get("train_seconds", math.nan))
    result.eval_seconds = float(timing.get("eval_seconds", math.nan))
    return result


def run_sweep(definition: SweepDefinition, configs: Sequence[tuple[float, float]], out: Path,
              overrides: Mapping[str, Any], profile: str, *, note: str | None = None,
              on_result: Callable[[int, ConfigResult, float], None] | None = None) -> list[ConfigResult]:
    """Run every configuration, rewriting the tables and the figure after each one (a sweep that stops
    early still leaves its figures so far).

    Args:
        configs: (α, β) pairs, in the order they run.
        out: the sweep folder: a folder per configuration, ``sweep.csv``, ``sweep.md``, ``sweep.png``.
        overrides: bundle overrides for every run (``bundle_root`` and ``dataset_dir`` among them); each step
            gets those its configs accept.
        profile: ``"cpu"`` or ``"gpu"``: which of the definition's config lists run.
        note: the settings, written under the tables' and the figure's headings.
        on_result: called with (index, result, wall seconds) after each configuration.
    """
    results: list[ConfigResult] = []
    for k, (alpha, beta) in enumerate(configs):
        start = time.perf_counter()
        results.append(run_config(definition, alpha, beta, out, overrides, profile))
        if on_result is not None:
            on_result(k, results[-1], time.perf_counter() - start)
        write_tables(results, out, note=note)
        plot_matrix(results, out / "sweep.png", definition.alphas, definition.betas, title=note)
    return results
