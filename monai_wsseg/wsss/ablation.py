"""Paper B's ablation (Han et al. 2022, §V-B, Table III): train and evaluate every model of the table with the
``wsss_tissue_segmentation`` bundle, each run in its own folder ``OUT/<run>``, and tabulate them
(:mod:`.ablation_tables`).

The runs and the rows are a run definition, ``configs/ablation/wsss_table3.json``, read by
:func:`load_ablation` (keys: see :class:`AblationDefinition`). In the paper's table, rows (1)–(3) are phase-1
classifiers (``pda_mode`` none / constant / pda; figures from their ``cam:bn7`` row), rows (4)–(6) phase-2
segmenters trained on one layer of the upstream run's pseudo masks (b4_3, b5_2, bn7), row (7) the
multi-layer one and row (8) the same with the classification gate (``segmentation`` / ``segmentation+gate``).

A phase-1 run is ``train_cls`` then ``evaluate`` (no segmenter: Grad-CAM rows only); the upstream run
(``p1_pda``) also writes the pseudo masks (``pseudo``) when a phase-2 row is asked for. A phase-2 run is
``train_seg`` on ``OUT/<upstream>/pseudo`` (one layer: ``layer_dirs [x]``, ``layer_weights [1.0]``;
multi-layer: the bundle's defaults) then ``evaluate`` with the upstream classifier (the gate's). Every step
runs in this process, as ``python -m monai.bundle run`` would (:func:`~monai_wsseg.bundle.runs.run_bundle`).

A run whose evaluation exists is read back, not run again; a phase-2 run made with an upstream classifier
that has been trained again since is redone. A failing run is recorded and the others go on (phase-2 runs
need the upstream run). Finished runs are not redone when the overrides change: give new settings a new
``OUT``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_wsseg.bundle import runs as bundle_runs
from monai_wsseg.bundle.definitions import (
    PROFILES,
    check_keys,
    keyword_names,
    object_of,
    profile_configs,
    read_definition,
    resolve_path,
    text,
)
from monai_wsseg.metrics.tissue import read_scores_table
from monai_wsseg.utils.atomic import write_text_atomically
from monai_wsseg.wsss.ablation_tables import RunResult, format_number, write_tables

__all__ = ["OWN_KEYS", "PHASES", "AblationDefinition", "Row", "Run", "Setup", "check_ablation_overrides",
           "evaluate", "load_ablation", "parse_rows", "pseudo_masks", "quick_patches", "run_ablation", "run_one",
           "runs_for", "train"]

#: Steps of the runs; the definition gives each profile's config files for each.
PHASES: tuple[str, ...] = ("train_cls", "pseudo", "train_seg", "evaluate")

#: Override ids set per run, or on which the table's layout depends.
OWN_KEYS = frozenset({"bundle_root", "dataset_dir", "output_dir", "ckpt_dir", "pda_mode", "pseudo_dir", "layer_dirs",
                      "layer_weights", "layers", "classifier_path", "segmenter_path", "evaluation_dir"})

#: A run's own record: seconds per step (summed over attempts), the steps completed, the upstream checkpoint.
RECORD = "ablation_run.json"

PDA_MODES: tuple[str, ...] = ("none", "constant", "pda")
_KEYS = frozenset({"description", "root", "bundle", "configs", "classifier_width_from", "upstream", "runs", "rows",
                   "quick"})

logger = logging.getLogger("wsss_ablation")


@dataclass(frozen=True)
class Run:
    """One trained model: ``phase`` 1 with ``pda_mode``, or phase 2 on the upstream run's ``layers`` pseudo
    masks (``()``: the bundle's multi-layer defaults)."""

    name: str
    phase: int
    pda_mode: str = "pda"
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """A row of the table: which run, which row of its ``evaluation.csv``, and the paper's description.

    Attributes:
        number: the row's number, from 1.
        run: the run whose evaluation gives the figures.
        source: the row of that run's ``evaluation.csv``.
        pda: ``"none"`` | ``"constant"`` | ``"pda"``.
        pseudo: ``""`` (phase 1) | a layer | ``"multi"``.
        gate: the classification gate is on.
    """

    number: int
    run: str
    source: str
    pda: str
    pseudo: str
    gate: bool = False


@dataclass(frozen=True)
class AblationDefinition:
    """The runs and rows of an ablation (``configs/ablation/*.json``).

    Attributes:
        bundle: the WSSS bundle folder (holding ``configs/``).
        configs: ``{profile: {phase: config files}}`` for the phases of :data:`PHASES`.
        runs: run name → :class:`Run`, in the order they run.
        rows: the table's rows, numbered 1, 2, ...
        upstream: the phase-1 run whose classifier and pseudo masks every phase-2 run uses.
        classifier_width_from: profile → a config file whose ``width`` the ``pseudo`` and ``evaluate`` phases
            get (their configs do not merge the training overlay, yet the classifier they load was built at
            its width).
        quick_patches: keyword arguments of :func:`monai_wsseg.synthetic.generator.make_patch_set` for
            ``--quick``; quick_overrides: its bundle overrides (a smoke run, not the paper's setting).
        source: the definition file, when read from one.
    """

    bundle: Path
    configs: Mapping[str, Mapping[str, tuple[Path, ...]]]
    runs: Mapping[str, Run]
    rows: tuple[Row, ...]
    upstream: str
    classifier_width_from: Mapping[str, Path] = field(default_factory=dict)
    quick_patches: Mapping[str, Any] = field(default_factory=dict)
    quick_overrides: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def meta_file(self) -> Path:
        """The bundle's ``configs/metadata.json``."""
        return self.bundle / "configs" / "metadata.json"


def _run(item: Any, key: str) -> Run:
    item = object_of(item, key)
    check_keys(item, ("name", "phase", "pda_mode", "layers"), ("name", "phase"), key)
    name = text(item["name"], f"{key}.name")
    if "/" in name or name.startswith("."):
        raise ValueError(f"{key}.name: {name!r} is not a folder name")
    phase = item["phase"]
    if phase not in (1, 2) or isinstance(phase, bool):
        raise ValueError(f"{key}.phase: must be 1 or 2, got {phase!r}")
    pda_mode = item.get("pda_mode", "pda")
    if (phase != 1 and "pda_mode" in item) or pda_mode not in PDA_MODES:
        raise ValueError(f"{key}.pda_mode: one of {list(PDA_MODES)}, for phase 1 only; got {pda_mode!r}")
    layers = item.get("layers", [])
    if (phase != 2 and layers) or not isinstance(layers, list):
        raise ValueError(f"{key}.layers: a list of layer names, for phase 2 only; got {layers!r}")
    return Run(name, phase, pda_mode, tuple(text(v, f"{key}.layers") for v in layers))


def _row(item: Any, key: str, number: int, runs: Mapping[str, Run]) -> Row:
    item = object_of(item, key)
    check_keys(item, ("number", "run", "source", "pda", "pseudo", "gate"), ("number", "run", "source", "pda"), key)
    if item["number"] != number:
        raise ValueError(f"{key}.number: rows are numbered 1, 2, ... in order; expected {number}, "
                         f"got {item['number']!r}")
    if item["run"] not in runs:
        raise ValueError(f"{key}.run: {item['run']!r} is not one of the runs {list(runs)}")
    if item["pda"] not in PDA_MODES:
        raise ValueError(f"{key}.pda: must be one of {list(PDA_MODES)}, got {item['pda']!r}")
    pseudo, gate = item.get("pseudo", ""), item.get("gate", False)
    if not isinstance(pseudo, str) or not isinstance(gate, bool):
        raise ValueError(f"{key}: pseudo must be a string and gate true or false, got {pseudo!r}, {gate!r}")
    return Row(number, item["run"], text(item["source"], f"{key}.source"), item["pda"], pseudo, gate)


def load_ablation(path: str | Path) -> AblationDefinition:
    """Read an ablation definition (e.g. ``configs/ablation/wsss_table3.json``).

    Keys: ``bundle``, ``configs`` (profiles ``cpu`` and ``gpu``, each the config lists of the phases
    ``train_cls``, ``pseudo``, ``train_seg``, ``evaluate``), ``runs`` (a list of ``{"name", "phase",
    "pda_mode" (phase 1), "layers" (phase 2)}``), ``rows`` (a list of ``{"number", "run", "source", "pda",
    "pseudo", "gate"}``), ``upstream`` (required with phase-2 runs), ``classifier_width_from``, ``quick``
    (``patches``: keyword arguments of ``make_patch_set``; ``overrides``), ``root``, ``description``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file and the key.
    """
    data, root = read_definition(path, what="ablation definition")
    try:
        check_keys(data, _KEYS, ("bundle", "configs", "runs", "rows"))
        bundle = resolve_path(root, data["bundle"], "bundle")
        if not (bundle / "configs").is_dir():
            raise ValueError(f"bundle: {bundle}: bundle folder not found (no configs/ in it)")
        configs = profile_configs(data["configs"], bundle / "configs", PHASES)
        if not isinstance(data["runs"], list) or not data["runs"]:
            raise ValueError("runs: must be a non-empty list of runs")
        runs: dict[str, Run] = {}
        for i, item in enumerate(data["runs"]):
            run = _run(item, f"runs[{i}]")
            if run.name in runs:
                raise ValueError(f"runs[{i}].name: {run.name!r} is given twice")
            runs[run.name] = run
        if not isinstance(data["rows"], list) or not data["rows"]:
            raise ValueError("rows: must be a non-empty list of rows")
        rows = tuple(_row(item, f"rows[{i}]", i + 1, runs) for i, item in enumerate(data["rows"]))
        upstream = data.get("upstream", "")
        if any(r.phase == 2 for r in runs.values()) and (upstream not in runs or runs[upstream].phase != 1):
            raise ValueError(f"upstream: must name a phase-1 run (phase-2 runs need it), got {upstream!r}")
        widths = object_of(data.get("classifier_width_from", {}), "classifier_width_from")
        check_keys(widths, PROFILES, (), "classifier_width_from")
        width_from = {p: bundle / "configs" / text(f, f"classifier_width_from.{p}") for p, f in widths.items()}
        for p, f in width_from.items():
            if "width" not in read_definition(f, what="bundle config")[0]:
                raise ValueError(f"classifier_width_from.{p}: {f} sets no width")
        quick = object_of(data.get("quick", {}), "quick")
        check_keys(quick, ("patches", "overrides"), (), "quick")
        patches = object_of(quick.get("patches", {}), "quick.patches")
        from monai_wsseg.synthetic.generator import make_patch_set

        check_keys(patches, keyword_names(make_patch_set, ["out_dir"]), (), "quick.patches")
        overrides = object_of(quick.get("overrides", {}), "quick.overrides")
        owned = sorted(set(overrides) & (OWN_KEYS | bundle_runs.WORKFLOW_ARGS))
        if owned:
            raise ValueError(f"quick.overrides: {owned} are set per run")
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return AblationDefinition(bundle, configs, runs, rows, upstream, width_from, dict(patches), dict(overrides),
                              Path(path).resolve())


# ---------------------------------------------------------------------------------------------------------
# rows and the runs behind them
# ---------------------------------------------------------------------------------------------------------
def parse_rows(text: str, definition: AblationDefinition) -> list[int]:
    """``"1,3,7,8"`` → ``[1, 3, 7, 8]``: numbers of the table's rows, sorted, none repeated.

    Raises:
        ValueError: naming ``--rows`` and the offending part.
    """
    out: list[int] = []
    n_rows = len(definition.rows)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= n_rows:
            raise ValueError(f"--rows: {part!r} is not a row of the table (1..{n_rows})")
        if int(part) in out:
            raise ValueError(f"--rows: {part} is given twice")
        out.append(int(part))
    if not out:
        raise ValueError("--rows: no row given")
    return sorted(out)


def runs_for(definition: AblationDefinition, rows: Sequence[int]) -> list[str]:
    """The runs ``rows`` need, in the order they run: phase 2 needs the upstream classifier and pseudo masks."""
    names = {definition.rows[n - 1].run for n in rows}
    if any(definition.runs[n].phase == 2 for n in names):
        names.add(definition.upstream)
    return [name for name in definition.runs if name in names]


@dataclass(frozen=True)
class Setup:
    """What every run shares: the definition, where, which profile, and the bundle overrides of all phases."""

    definition: AblationDefinition
    out: Path
    profile: str
    overrides: Mapping[str, Any]  # bundle_root, dataset_dir, --quick settings and the user's

    def files(self, phase: str) -> list[Path]:
        """The profile's config files of ``phase``, merged in this order."""
        return list(self.definition.configs[self.profile][phase])

    def pairs(self, phase: str, **own: Any) -> dict[str, Any]:
        """Overrides of ``phase``: the profile's, then those its config accepts, then the run's own."""
        base: dict[str, Any] = {}
        width_from = self.definition.classifier_width_from.get(self.profile)
        if width_from is not None and phase in ("pseudo", "evaluate"):
            base["width"] = json.loads(width_from.read_text())["width"]
        base.update(self.overrides)
        own = {k: str(v) if isinstance(v, Path) else v for k, v in own.items()}  # the CLI passes strings too
        return {**bundle_runs.applicable(base, self.files(phase)), **own}

    def run_dir(self, name: str) -> Path:
        """The output folder of run ``name``."""
        return self.out / name


def check_ablation_overrides(setup: Setup, extra: Mapping[str, Any]) -> None:
    """Refuse the user's bundle overrides that runs set themselves, and those no phase's config defines.

    Raises:
        ValueError: naming the offending ids.
    """
    reserved = sorted(set(extra) & (OWN_KEYS | bundle_runs.WORKFLOW_ARGS))
    if reserved:
        raise ValueError(f"bundle overrides {reserved} are set by the script per run (use --dataset_dir / "
                         "--output_dir / --rows)")
    unknown = bundle_runs.unknown_overrides(extra, [setup.files(p) for p in PHASES])
    if unknown:
        raise ValueError(f"bundle overrides {unknown}: no phase's config defines them (or their parent id)")


def quick_patches(definition: AblationDefinition, folder: Path) -> Path:
    """The tiny synthetic patch set of ``--quick`` in ``folder`` (made, or reused when there); returns it."""
    from monai_wsseg.synthetic.generator import make_patch_set

    return make_patch_set(folder, **definition.quick_patches)


def classifier_of(setup: Setup, name: str) -> Path:
    return setup.run_dir(name) / "models" / "classifier.pt"


def fingerprint(path: Path) -> str | None:
    """Size and modification time of a checkpoint: changes when it is written again (trained again)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


# ---------------------------------------------------------------------------------------------------------
# the phases of one run
# ---------------------------------------------------------------------------------------------------------
def train(run: Run, setup: Setup) -> None:
    """Train ``run`` (phase 1: the classifier; phase 2: the segmenter on the upstream pseudo masks)."""
    out, meta = setup.run_dir(run.name), setup.definition.meta_file
    if run.phase == 1:
        bundle_runs.run_bundle(setup.files("train_cls"), "training",
                               setup.pairs("train_cls", output_dir=out, pda_mode=run.pda_mode), meta_file=meta)
        produced = classifier_of(setup, run.name)
    else:
        own: dict[str, Any] = {"output_dir": out, "pseudo_dir": setup.run_dir(setup.definition.upstream) / "pseudo"}
        if run.layers:  # one layer alone carries the whole loss
            own.update(layer_dirs=list(run.layers), layer_weights=[1.0] * len(run.layers))
        bundle_runs.run_bundle(setup.files("train_seg"), "training", setup.pairs("train_seg", **own), meta_file=meta)
        produced = out / "models" / "model.pt"
    if not produced.is_file():  # the checkpoint is written on a validation: none means no validation ran
        raise FileNotFoundError(f"{produced}: training wrote no checkpoint (did validation run?)")


def pseudo_masks(run: Run, setup: Setup) -> None:
    """Write the pseudo masks of ``run``'s classifier into ``OUT/<run>/pseudo``."""
    bundle_runs.run_bundle(setup.files("pseudo"), "run", setup.pairs("pseudo", output_dir=setup.run_dir(run.name)),
                           meta_file=setup.definition.meta_file, workflow_type="infer")


def evaluate(run: Run, setup: Setup) -> None:
    """Evaluate ``run`` into ``OUT/<run>/evaluation`` (phase 2 with the upstream classifier as the gate's)."""
    classifier = classifier_of(setup, run.name if run.phase == 1 else setup.definition.upstream)
    bundle_runs.run_bundle(setup.files("evaluate"), "run",
                           setup.pairs("evaluate", output_dir=setup.run_dir(run.name), classifier_path=classifier),
                           meta_file=setup.definition.meta_file, workflow_type="infer")


def _read_record(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((run_dir / RECORD).read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def run_one(run: Run, setup: Setup, *, with_pseudo: bool, failed: Mapping[str, str]) -> RunResult:
    """Train, (write pseudo masks,) evaluate one run, or read it back when its evaluation exists.

    Args:
        with_pseudo: the upstream run only: phase-2 rows are asked for, so its pseudo masks are needed too.
        failed: runs failed so far (name → reason): a phase-2 run does not start without the upstream run.
    """
    out, upstream_name = setup.run_dir(run.name), setup.definition.upstream
    result = RunResult(run.name)
    record = _read_record(out)
    result.seconds = {k: float(v) for k, v in record.get("seconds", {}).items()}
    done = set(record.get("done", []))
    evaluation = out / "evaluation" / "evaluation.csv"
    upstream = fingerprint(classifier_of(setup, upstream_name)) if run.phase == 2 else None
    if run.phase == 2 and upstream_name in failed:
        result.status, result.error = "failed", f"needs {upstream_name}, which failed ({failed[upstream_name]})"
        logger.error("%s: %s", run.name, result.error)
        return result
    if run.phase == 2 and record.get("upstream") not in (None, upstream):
        # Its pseudo masks and gate came from an upstream classifier that has been trained again since.
        logger.warning("%s: %s's classifier changed since this run was trained; running it again", run.name,
                       upstream_name)
        done.clear()
        evaluation.unlink(missing_ok=True)
    pseudo_ready = not with_pseudo or "pseudo" in done
    if evaluation.is_file() and pseudo_ready:
        try:
            result.rows, result.status = read_scores_table(evaluation), "resumed"
            logger.info("%s: evaluation found, read back (%s)", run.name, evaluation)
            return result
        except (OSError, ValueError) as exc:  # unreadable: evaluate again rather than report nothing
            logger.warning("%s: %s; evaluating again", evaluation, bundle_runs.one_line(exc))
            done.discard("evaluate")

    def save() -> None:
        record = {"run": run.name, "seconds": result.seconds, "done": sorted(done), "upstream": upstream}
        write_text_atomically(out / RECORD, json.dumps(record, indent=2) + "\n")

    checkpoint = classifier_of(setup, run.name) if run.phase == 1 else out / "models" / "model.pt"
    steps: list[tuple[str, Callable[[Run, Setup], None]]] = []
    retrain = "train" not in done or not checkpoint.is_file()
    if retrain:
        done.clear()  # what came from an earlier checkpoint is stale once training runs again
        steps.append(("train", train))
    if with_pseudo and "pseudo" not in done:
        steps.append(("pseudo", pseudo_masks))
    if retrain or "evaluate" not in done or not evaluation.is_file():
        steps.append(("evaluate", evaluate))
    out.mkdir(parents=True, exist_ok=True)
    try:
        for step, fn in steps:
            if step == "train":
                # The pseudo-mask job skips masks that exist: masks of the previous classifier must go.
                shutil.rmtree(out / "pseudo", ignore_errors=True)
                evaluation.unlink(missing_ok=True)
            logger.info("%s: %s ...", run.name, step)
            start = time.perf_counter()
            try:
                fn(run, setup)
            finally:  # a retried step adds to the time already spent, so the notes give the total cost
                result.seconds[step] = result.seconds.get(step, 0.0) + time.perf_counter() - start
                save()
            done.add(step)
            save()
            logger.info("%s: %s done in %.1f s", run.name, step, time.perf_counter() - start)
        result.rows, result.status = read_scores_table(evaluation), "done"
    except Exception as exc:  # one failing run must not end an ablation of many hours
        logger.exception("%s failed", run.name)
        result.status, result.error = "failed", bundle_runs.one_line(exc)
    return result


def run_ablation(setup: Setup, rows: Sequence[int], note: str) -> dict[str, RunResult]:
    """Run (or read back) every run ``rows`` need, rewriting ``ablation.csv`` / ``ablation.md`` after each (an
    ablation that stops early still leaves its rows so far). Returns run name → result, in run order."""
    definition = setup.definition
    names = runs_for(definition, rows)
    with_pseudo = any(definition.runs[n].phase == 2 for n in names)
    results: dict[str, RunResult] = {}
    failed: dict[str, str] = {}
    for k, name in enumerate(names):
        start = time.perf_counter()
        r = run_one(definition.runs[name], setup, with_pseudo=with_pseudo and name == definition.upstream,
                    failed=failed)
        results[name] = r
        if r.status == "failed":
            failed[name] = r.error
        logger.info("[%d/%d] %s: %s in %.1f s (run's total %s s)%s", k + 1, len(names), name, r.status,
                    time.perf_counter() - start, format_number(r.total_seconds, 1) or "?",
                    f" — {r.error}" if r.error else "")
        write_tables(definition, rows, results, setup.out, note)
    return results
