"""Paper B's ablation (Han et al. 2022, §V-B, Table III) as one command: train and evaluate every model of
the table with the ``wsss_tissue_segmentation`` bundle, and tabulate them as the paper does.

Rows (the paper's numbering) and the runs behind them, each in its own folder ``OUT/<run>``:

==== ============================================== ============ =================================
row  model                                          run          figures from its evaluation.csv
==== ============================================== ============ =================================
(1)  phase 1 alone                                  p1_none      ``cam:bn7``
(2)  phase 1, dropout attention, constant μ = 0.7   p1_constant  ``cam:bn7``
(3)  phase 1, progressive dropout attention (PDA)   p1_pda       ``cam:bn7``
(4)  phase 2 on p1_pda's b4_3 pseudo masks          p2_b4_3      ``segmentation``
(5)  phase 2 on p1_pda's b5_2 pseudo masks          p2_b5_2      ``segmentation``
(6)  phase 2 on p1_pda's bn7 pseudo masks           p2_bn7       ``segmentation``
(7)  phase 2, multi-layer pseudo supervision        p2_multi     ``segmentation``
(8)  (7) with the classification gate               p2_multi     ``segmentation+gate``
==== ============================================== ============ =================================

A phase-1 run is ``train_cls.json`` (``pda_mode`` none / constant / pda) then ``evaluate.json`` (no segmenter:
Grad-CAM rows only); p1_pda also writes the pseudo masks (``pseudo_masks.json``) when a phase-2 row is
asked for. A phase-2 run is ``train_seg.json`` on ``OUT/p1_pda/pseudo`` (one layer: ``layer_dirs [x]``,
``layer_weights [1.0]``; multi-layer: the bundle's defaults) then ``evaluate.json`` with p1_pda's classifier
(the gate's). Every bundle runs in this process, as ``python -m monai.bundle run`` would (see
:mod:`monai_wsseg.bundle.runs`).

Outputs: ``OUT/ablation.csv`` and ``OUT/ablation.md`` (replaced atomically after each run; the notes give
each run's wall time), ``OUT/ablation.log`` (the full log). A run whose evaluation exists is read back, not
run again; a phase-2 run made with a p1_pda classifier that has been trained again since is redone. A
failing run is logged and named at the end, the others go on (phase-2 runs need p1_pda), and the exit code
is then 1. Finished runs are not redone when the overrides change: give new settings a new ``OUT``.

Usage::

    python scripts/wsss_ablation.py --dataset_dir DIR --output_dir OUT [--profile cpu|gpu] [--rows 1,3,7,8]
        [-- --num_epochs 2 --batch_size 4 ...]
    python scripts/wsss_ablation.py --quick --output_dir OUT     # smoke run: tiny synthetic patches, 1 epoch

``--profile cpu`` adds ``cpu.json`` to phase-1 training, ``cpu_seg.json`` to phase-2 training and evaluation,
and ``cpu.json``'s ``width`` to the pseudo masks and the evaluation (default: gpu when CUDA is available).
Bundle overrides after ``--`` are parsed as the bundle CLI parses them and go to every phase whose config
accepts them (a nested id needs its parent there); one that no phase defines is refused.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(PROJECT_ROOT))

from monai_wsseg.bundle import runs as bundle_runs  # noqa: E402
from monai_wsseg.utils.atomic import write_text_atomically  # noqa: E402
from monai_wsseg.metrics.tissue import read_scores_table  # noqa: E402

BUNDLE = PROJECT_ROOT / "bundles" / "wsss_tissue_segmentation"
CONFIGS = BUNDLE / "configs"
META = CONFIGS / "metadata.json"

#: Multi-layer pseudo supervision: the layers p1_pda's pseudo masks are written for (train_seg.json's
#: default ``layer_dirs``); each single-layer row trains on one of them.
LAYERS: tuple[str, ...] = ("b4_3", "b5_2", "bn7")

#: Override ids the script sets per run, or on which the table's layout depends.
OWN_KEYS = frozenset({"bundle_root", "dataset_dir", "output_dir", "ckpt_dir", "pda_mode", "pseudo_dir", "layer_dirs",
                      "layer_weights", "layers", "classifier_path", "segmenter_path", "evaluation_dir"})

#: ``--quick``: a CPU smoke run (not the paper's setting) on a tiny synthetic patch set.
QUICK_PATCHES: dict[str, Any] = {"n_train": 8, "n_val": 4, "n_test": 4, "size": 64, "seed": 0}
QUICK_OVERRIDES: dict[str, Any] = {"num_epochs": 1, "batch_size": 4, "num_workers": 0}

#: A run's own record: seconds per step (summed over attempts) and the steps completed.
RECORD = "ablation_run.json"

logger = logging.getLogger("wsss_ablation")


# ---------------------------------------------------------------------------------------------------------
# the table's rows and the runs behind them
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One trained model: ``phase`` 1 with ``pda_mode``, or phase 2 on p1_pda's ``layers`` pseudo masks."""

    name: str
    phase: int
    pda_mode: str = "pda"
    layers: tuple[str, ...] = ()  # phase 2: () = the bundle's multi-layer defaults


@dataclass(frozen=True)
class Row:
    """A row of Table III: which run, which row of its ``evaluation.csv``, and the paper's description."""

    number: int
    run: str
    source: str  # row of the run's evaluation.csv
    pda: str  # "none" | "constant" | "pda"
    pseudo: str  # "" (phase 1) | a layer | "multi"
    gate: bool = False


RUNS: dict[str, Run] = {r.name: r for r in (
    Run("p1_none", 1, pda_mode="none"),
    Run("p1_constant", 1, pda_mode="constant"),
    Run("p1_pda", 1, pda_mode="pda"),
    *(Run(f"p2_{layer}", 2, layers=(layer,)) for layer in LAYERS),
    Run("p2_multi", 2),
)}

ROWS: tuple[Row, ...] = (
    Row(1, "p1_none", "cam:bn7", "none", ""),
    Row(2, "p1_constant", "cam:bn7", "constant", ""),
    Row(3, "p1_pda", "cam:bn7", "pda", ""),
    *(Row(4 + i, f"p2_{layer}", "segmentation", "pda", layer) for i, layer in enumerate(LAYERS)),
    Row(7, "p2_multi", "segmentation", "pda", "multi"),
    Row(8, "p2_multi", "segmentation+gate", "pda", "multi", gate=True),
)

#: The figures of a row besides per-class IoU, as the evaluation CSV names them and in the paper's order.
FIGURES: tuple[str, ...] = ("fwiou", "miou", "acc")


def parse_rows(text: str) -> list[int]:
    """``"1,3,7,8"`` → ``[1, 3, 7, 8]``: numbers of Table III (1–8), sorted, none repeated."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= len(ROWS):
            raise ValueError(f"--rows: {part!r} is not a row of Table III (1..{len(ROWS)})")
        if int(part) in out:
            raise ValueError(f"--rows: {part} is given twice")
        out.append(int(part))
    if not out:
        raise ValueError("--rows: no row given")
    return sorted(out)


def runs_for(rows: Sequence[int]) -> list[str]:
    """The runs ``rows`` need, in the order they run: phase 2 needs p1_pda's classifier and pseudo masks."""
    names = {ROWS[n - 1].run for n in rows}
    if any(RUNS[n].phase == 2 for n in names):
        names.add("p1_pda")
    return [name for name in RUNS if name in names]


# ---------------------------------------------------------------------------------------------------------
# the phases of one run
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """What every run shares: where, which profile, and the bundle overrides common to all phases."""

    out: Path
    profile: str
    overrides: Mapping[str, Any]  # bundle_root, dataset_dir, --quick settings and the user's

    def files(self, phase: str) -> list[Path]:
        cpu = self.profile == "cpu"
        return {
            "train_cls": [CONFIGS / "train_cls.json"] + ([CONFIGS / "cpu.json"] if cpu else []),
            "pseudo": [CONFIGS / "pseudo_masks.json"],
            "train_seg": [CONFIGS / "train_seg.json"] + ([CONFIGS / "cpu_seg.json"] if cpu else []),
            "evaluate": [CONFIGS / "evaluate.json"] + ([CONFIGS / "cpu_seg.json"] if cpu else []),
        }[phase]

    def pairs(self, phase: str, **own: Any) -> dict[str, Any]:
        """Overrides of ``phase``: the profile's, then those its config accepts, then the run's own."""
        base: dict[str, Any] = {}
        if self.profile == "cpu" and phase in ("pseudo", "evaluate"):
            # Neither config takes cpu.json, yet the classifier they load was built at cpu.json's width.
            base["width"] = json.loads((CONFIGS / "cpu.json").read_text())["width"]
        base.update(self.overrides)
        own = {k: str(v) if isinstance(v, Path) else v for k, v in own.items()}  # the CLI passes strings too
        return {**bundle_runs.applicable(base, self.files(phase)), **own}

    def run_dir(self, name: str) -> Path:
        return self.out / name


def classifier_of(setup: Setup, name: str) -> Path:
    return setup.run_dir(name) / "models" / "classifier.pt"


def fingerprint(path: Path) -> str | None:
    """Size and modification time of a checkpoint: changes when it is written again (trained again)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def train(run: Run, setup: Setup) -> None:
    out = setup.run_dir(run.name)
    if run.phase == 1:
        bundle_runs.run_bundle(setup.files("train_cls"), "training",
                   setup.pairs("train_cls", output_dir=out, pda_mode=run.pda_mode), meta_file=META)
        produced = classifier_of(setup, run.name)
    else:
        own: dict[str, Any] = {"output_dir": out, "pseudo_dir": setup.run_dir("p1_pda") / "pseudo"}
        if run.layers:  # one layer alone carries the whole loss
            own.update(layer_dirs=list(run.layers), layer_weights=[1.0] * len(run.layers))
        bundle_runs.run_bundle(setup.files("train_seg"), "training", setup.pairs("train_seg", **own), meta_file=META)
        produced = out / "models" / "model.pt"
    if not produced.is_file():  # the checkpoint is written on a validation: none means no validation ran
        raise FileNotFoundError(f"{produced}: training wrote no checkpoint (did validation run?)")


def pseudo_masks(run: Run, setup: Setup) -> None:
    out = setup.run_dir(run.name)
    bundle_runs.run_bundle(setup.files("pseudo"), "run", setup.pairs("pseudo", output_dir=out), meta_file=META,
               workflow_type="infer")


def evaluate(run: Run, setup: Setup) -> None:
    out = setup.run_dir(run.name)
    own: dict[str, Any] = {"output_dir": out,
                           "classifier_path": classifier_of(setup, run.name if run.phase == 1 else "p1_pda")}
    bundle_runs.run_bundle(setup.files("evaluate"), "run", setup.pairs("evaluate", **own), meta_file=META,
                           workflow_type="infer")


# ---------------------------------------------------------------------------------------------------------
# one run, resumable
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    name: str
    status: str = "pending"  # "done" (run now), "resumed" (read back), "failed"
    error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # per step, summed over attempts
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # evaluation.csv: row → column → value

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values()) if self.seconds else math.nan


#: ``evaluation.csv`` → ``{row: {"iou_TE": …, "miou": …, "fwiou": …, "acc": …}}`` (ValueError if malformed).
read_evaluation = read_scores_table


def _read_record(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((run_dir / RECORD).read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def run_one(run: Run, setup: Setup, *, with_pseudo: bool, failed: Mapping[str, str]) -> RunResult:
    """Train, (write pseudo masks,) evaluate one run, or read it back when its evaluation exists.

    Args:
        with_pseudo: p1_pda only: phase-2 rows are asked for, so its pseudo masks are needed too.
        failed: runs failed so far (name → reason): a phase-2 run does not start without p1_pda.
    """
    out = setup.run_dir(run.name)
    result = RunResult(run.name)
    record = _read_record(out)
    result.seconds = {k: float(v) for k, v in record.get("seconds", {}).items()}
    done = set(record.get("done", []))
    evaluation = out / "evaluation" / "evaluation.csv"
    upstream = fingerprint(classifier_of(setup, "p1_pda")) if run.phase == 2 else None
    if run.phase == 2 and "p1_pda" in failed:
        result.status, result.error = "failed", f"needs p1_pda, which failed ({failed['p1_pda']})"
        logger.error("%s: %s", run.name, result.error)
        return result
    if run.phase == 2 and record.get("upstream") not in (None, upstream):
        # Its pseudo masks and gate came from a p1_pda classifier that has been trained again since.
        logger.warning("%s: p1_pda's classifier changed since this run was trained; running it again", run.name)
        done.clear()
        evaluation.unlink(missing_ok=True)
    pseudo_ready = not with_pseudo or "pseudo" in done
    if evaluation.is_file() and pseudo_ready:
        try:
            result.rows, result.status = read_evaluation(evaluation), "resumed"
            logger.info("%s: evaluation found, read back (%s)", run.name, evaluation)
            return result
        except (OSError, ValueError) as exc:  # unreadable: evaluate again rather than report nothing
            logger.warning("%s: %s; evaluating again", evaluation, bundle_runs.one_line(exc))
            done.discard("evaluate")

    def save() -> None:
        record = {"run": run.name, "seconds": result.seconds, "done": sorted(done), "upstream": upstream}
        write_text_atomically(out / RECORD, json.dumps(record, indent=2) + "\n")

    checkpoint = classifier_of(setup, run.name) if run.phase == 1 else out / "models" / "model.pt"
    steps: list[tuple[str, Any]] = []
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
        result.rows, result.status = read_evaluation(evaluation), "done"
    except Exception as exc:  # one failing run must not end an ablation of many hours
        logger.exception("%s failed", run.name)
        result.status, result.error = "failed", bundle_runs.one_line(exc)
    return result


# ---------------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------------
def class_names(results: Mapping[str, RunResult]) -> list[str]:
    """Classes in the order of the evaluation CSVs' ``iou_<class>`` columns."""
    names: list[str] = []
    for r in results.values():
        for figures in r.rows.values():
            names += [k[4:] for k in figures if k.startswith("iou_") and k[4:] not in names]
    return names


def _num(v: float, digits: int = 4) -> str:
    return "" if math.isnan(v) else f"{v:.{digits}f}"  # missing is blank, never 0


def table_rows(rows: Sequence[int], results: Mapping[str, RunResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of ``ablation.csv``: one row per asked row of Table III, figures NaN when missing."""
    classes = class_names(results)
    columns = ["row", "phase", "pda", "pseudo_supervision", "class_gate", *(f"iou_{c}" for c in classes), *FIGURES,
               "run", "source_row", "run_seconds", "status", "error"]
    out = []
    for n in rows:
        spec = ROWS[n - 1]
        r = results.get(spec.run, RunResult(spec.run))
        figures = r.rows.get(spec.source, {})
        error = r.error
        if r.status in ("done", "resumed") and not figures:
            error = f"{spec.source!r} is not a row of {spec.run}/evaluation/evaluation.csv"
        values = {c: figures.get(c, math.nan) for c in columns if c.startswith("iou_") or c in FIGURES}
        out.append({"row": n, "phase": RUNS[spec.run].phase, "pda": spec.pda, "pseudo_supervision": spec.pseudo,
                    "class_gate": int(spec.gate), **values, "run": spec.run, "source_row": spec.source,
                    "run_seconds": r.total_seconds, "status": r.status, "error": error})
    return columns, out


def markdown(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], results: Mapping[str, RunResult],
             note: str) -> str:
    """Table III as the paper lays it out, with notes: settings, each run's wall time, failures."""
    classes = [c[4:] for c in columns if c.startswith("iou_")]
    header = ["", "Phase", "PDA", "Pseudo supervision", "Class-gate", *classes, "FwIoU", "MIoU", "ACC"]
    lines = ["# Ablation studies (Han et al. 2022, Table III)", "",
             "IoU per class, FwIoU, MIoU and ACC on the evaluation split (`evaluate.json`'s `split`), white "
             "background ignored. Rows (1)–(3): phase-1 Grad-CAM masks of layer bn7 (`cam:bn7`); (4)–(8): the "
             "phase-2 segmenter (`segmentation`; (8) `segmentation+gate`). PDA: DA is dropout attention with a "
             "constant μ = 0.7. Blank: the class is absent from the split (NaN), or the run failed or did not "
             "run.", "", note, "",
             "| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        pda = {"none": "-", "constant": "DA", "pda": "✓"}[row["pda"]]
        pseudo = {"": "-", "multi": "Multi-Layer"}.get(row["pseudo_supervision"], row["pseudo_supervision"])
        cells = [f"({row['row']})", f"Phase {row['phase']}", pda, pseudo, "✓" if row["class_gate"] else "-",
                 *(_num(row[f"iou_{c}"]) for c in classes), *(_num(row[k]) for k in FIGURES)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Wall time per run (this script's, summed over attempts; p2_multi serves rows (7) and (8)):", ""]
    for r in results.values():
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items())
        lines.append(f"- {r.name}: {_num(r.total_seconds, 1) or '?'} s ({steps or 'no time recorded'}), {r.status}"
                     + (f" — {r.error}" if r.error else ""))
    failed = [r for r in results.values() if r.status == "failed"]
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{r.name} ({r.error})" for r in failed) + " — see ablation.log"]
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[int], results: Mapping[str, RunResult], out: Path, note: str) -> tuple[Path, Path]:
    """Write ``out/ablation.csv`` and ``out/ablation.md`` atomically; return their paths."""
    columns, table = table_rows(rows, results)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in table:
        writer.writerow([format(v, ".10g") if isinstance(v, float) and not math.isnan(v)
                         else "" if isinstance(v, float) else v for v in (row[c] for c in columns)])
    return (write_text_atomically(out / "ablation.csv", buf.getvalue()),
            write_text_atomically(out / "ablation.md", markdown(columns, table, results, note)))


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an ``ablation.csv``; figures and seconds as floats (NaN when blank)."""
    text_columns = {"pda", "pseudo_supervision", "run", "source_row", "status", "error"}
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v if k in text_columns else int(v) if k in ("row", "phase", "class_gate")
                 else float(v) if v else math.nan for k, v in r.items()} for r in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", type=Path, help="patch set (training/, val/, test/); required unless --quick")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--profile", choices=("cpu", "gpu"),
                   help="cpu adds the bundle's CPU overlays (default: gpu when CUDA is available, else cpu)")
    p.add_argument("--rows", default=",".join(str(r.number) for r in ROWS),
                   help="rows of Table III to make, e.g. 1,3,7,8 (default: all); only the runs they need run")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 epoch, batch 4; a tiny synthetic patch set in OUT/patches without --dataset_dir")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code: 0 when every asked row has figures, 1 when a run failed; 2 for a bad command line."""
    own, extra_args = bundle_runs.split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(own)
    try:
        rows = parse_rows(args.rows)
        extra = bundle_runs.parse_overrides(extra_args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.dataset_dir is None and not args.quick:
        parser.error("--dataset_dir is required (or --quick for a synthetic patch set)")
    reserved = sorted(set(extra) & (OWN_KEYS | bundle_runs.WORKFLOW_ARGS))
    if reserved:
        parser.error(f"bundle overrides {reserved} are set by the script per run (use --dataset_dir / --output_dir "
                     "/ --rows)")

    import torch

    profile = args.profile or ("gpu" if torch.cuda.is_available() and not args.quick else "cpu")
    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with bundle_runs.bundle_logging(out / "ablation.log"):
        dataset_dir = args.dataset_dir
        if dataset_dir is None:  # --quick without a patch set: make (or reuse) a tiny synthetic one
            from monai_wsseg.synthetic.generator import make_patch_set

            dataset_dir = make_patch_set(out / "patches", **QUICK_PATCHES)
        overrides: dict[str, Any] = {"bundle_root": str(BUNDLE), "dataset_dir": str(Path(dataset_dir).resolve())}
        if args.quick:
            overrides.update(QUICK_OVERRIDES)
        overrides.update(extra)
        setup = Setup(out, profile, overrides)
        phases = ("train_cls", "pseudo", "train_seg", "evaluate")
        unknown = bundle_runs.unknown_overrides(extra, [setup.files(p) for p in phases])
        if unknown:
            parser.error(f"bundle overrides {unknown}: no phase's config defines them (or their parent id)")
        names = runs_for(rows)
        note = (f"Profile {profile}{' (--quick)' if args.quick else ''}; patches {dataset_dir}; overrides: "
                + (", ".join(f"{k}={v}" for k, v in overrides.items() if k not in ("bundle_root", "dataset_dir"))
                   or "none"))
        logger.info("WSSS ablation: rows %s need runs %s, into %s. %s", rows, names, out, note)
        with_pseudo = any(RUNS[n].phase == 2 for n in names)
        results: dict[str, RunResult] = {}
        failed: dict[str, str] = {}
        total = time.perf_counter()
        for k, name in enumerate(names):
            start = time.perf_counter()
            r = run_one(RUNS[name], setup, with_pseudo=with_pseudo and name == "p1_pda", failed=failed)
            results[name] = r
            if r.status == "failed":
                failed[name] = r.error
            logger.info("[%d/%d] %s: %s in %.1f s (run's total %s s)%s", k + 1, len(names), name, r.status,
                        time.perf_counter() - start, _num(r.total_seconds, 1) or "?",
                        f" — {r.error}" if r.error else "")
            write_tables(rows, results, out, note)  # an ablation that stops early still leaves its rows so far
        csv_path, md_path = write_tables(rows, results, out, note)
        print("\n" + md_path.read_text(encoding="utf-8"), flush=True)
        logger.info("tables: %s, %s; total %.1f s", csv_path, md_path, time.perf_counter() - total)
        _, table = table_rows(rows, results)
        missing = [f"({t['row']})" for t in table if t["status"] != "failed" and t["error"]]
        if failed or missing:
            logger.error("failed: %s", "; ".join([f"{n} ({e})" for n, e in failed.items()]
                                                 + [f"row {m} has no figures" for m in missing]))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
