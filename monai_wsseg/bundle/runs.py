"""Run MONAI bundle configs in this process, as ``python -m monai.bundle run`` would, for code that chains
many bundle runs (:mod:`monai_wsseg.mil.sweep`, :mod:`monai_wsseg.wsss.ablation`, the stability protocols).

``import monai`` costs seconds; a script that trains and evaluates a dozen configurations pays it once
instead of once per run. Overrides keep the bundle CLI's meaning (Python Fire's parsing), and one list of
overrides can serve several configs: :func:`applicable` keeps, per config, those it has a place for.

Cheap to import: ``monai`` and ``torch`` are imported inside the functions that need them.

Usage::

    from monai_wsseg.bundle.runs import applicable, bundle_logging, parse_overrides, run_bundle, split_argv

    own, extra = split_argv(["--output_dir", "out", "--", "--num_epochs", "2"])
    overrides = parse_overrides(extra)                       # {"num_epochs": 2}
    files = [CONFIGS / "train_cls.json", CONFIGS / "cpu.json"]
    with bundle_logging(Path("out") / "runs.log"):          # stdout + one log file for every run
        run_bundle(files, "training", {**applicable(overrides, files), "output_dir": "out/p1"},
                   meta_file=CONFIGS / "metadata.json")
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from typing_extensions import override

from monai_wsseg.errors import project_cause

__all__ = [
    "WORKFLOW_ARGS", "DropMessage", "applicable", "bundle_logging", "close_tensorboard", "one_line",
    "parse_overrides", "run_bundle", "split_argv", "unknown_overrides",
]

#: Arguments of ``monai.bundle run`` that select how a bundle runs rather than override a config id; a
#: script that runs bundles sets them itself.
WORKFLOW_ARGS = frozenset({"config_file", "meta_file", "logging_file", "init_id", "run_id", "final_id", "tracking",
                           "workflow_type", "properties_path", "args_file", "workflow_name"})


# ---------------------------------------------------------------------------------------------------------
# overrides, parsed as the bundle CLI parses them
# ---------------------------------------------------------------------------------------------------------
def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``[own..., "--", bundle overrides...]`` → ``(own, overrides)``; no ``--`` means no overrides."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """``["--alpha", "0.4", "--net#x=[1,2]", "--amp"]`` → ``{"alpha": 0.4, "net#x": [1, 2], "amp": True}``.

    Mirrors Python Fire, which ``python -m monai.bundle run`` uses, so an override means the same here and
    on the bundle command line: Fire's value parser, ``-`` in keys read as ``_``, a flag followed by another
    flag (or last) meaning ``True``. Negative numbers are values, not flags.

    Raises:
        ValueError: an argument that is neither ``--key`` nor the value of one.
    """
    try:
        from fire.parser import DefaultParseValue as parse_value
    except ImportError:  # fire is a dependency of this project; keep a literal parser as a fallback
        import ast

        def parse_value(text: str) -> Any:
            try:
                return ast.literal_eval(text)
            except (SyntaxError, ValueError):
                return text

    def is_flag(a: str) -> bool:
        return a.startswith("--") or (len(a) > 1 and a[0] == "-" and a[1].isalpha())

    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not is_flag(arg):
            raise ValueError(f"bundle overrides: expected --key value, got {arg!r}")
        key, eq, value = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if eq:
            i += 1
        elif i + 1 == len(args) or is_flag(args[i + 1]):
            value, i = "True", i + 1
        else:
            value, i = args[i + 1], i + 2
        out[key] = parse_value(value)
    return out


def _parent(key: str) -> str:
    """``"a#b#c"`` (or ``"a::b::c"``) → ``"a#b"``; ``""`` for a top-level id."""
    return key.replace("::", "#").rpartition("#")[0]


def _read_configs(config_files: Sequence[str | os.PathLike]) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(f=[str(f) for f in config_files])
    return parser


def applicable(overrides: Mapping[str, Any], config_files: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The overrides a merged config accepts: a nested id (``a#b``) needs its parent ``a`` in the config.

    One list of overrides serves configs that differ (training and evaluation, phases of a pipeline);
    MONAI's parser raises a KeyError on a nested id whose parent is missing, while a new top-level id is
    merely unused.
    """
    parser = _read_configs(config_files)
    return {k: v for k, v in overrides.items() if not _parent(k) or _parent(k) in parser}


def unknown_overrides(overrides: Mapping[str, Any],
                      config_sets: Sequence[Sequence[str | os.PathLike]]) -> list[str]:
    """Override ids that none of the merged configs ``config_sets`` has a place for, sorted.

    A nested id needs its parent in some config (as :func:`applicable`); a top-level id needs to be
    defined in some config: a typo such as ``--num_epoch`` would otherwise add an id that nothing reads.
    """
    parsers = [_read_configs(files) for files in config_sets]
    return sorted(k for k in overrides
                  if not any((_parent(k) or k.replace("::", "#")) in parser for parser in parsers))


# ---------------------------------------------------------------------------------------------------------
# the bundle, in this process
# ---------------------------------------------------------------------------------------------------------
def close_tensorboard(workflow: Any) -> None:
    """Close the SummaryWriters a bundle made: a bundle run never closes them, and each keeps a thread and
    an open event file, which many runs in one process would accumulate."""
    from monai.handlers import TensorBoardHandler

    def visit(v: Any) -> None:
        if isinstance(v, TensorBoardHandler):
            v.close()
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)

    for value in list(workflow.parser.ref_resolver.resolved_content.values()):
        visit(value)


def run_bundle(config_files: Sequence[str | os.PathLike], run_id: str, overrides: Mapping[str, Any], *,
               meta_file: str | os.PathLike | None, workflow_type: str = "train") -> Any:
    """``python -m monai.bundle run RUN_ID --config_file [...] --meta_file M --k v ...`` in this process.

    ``monai.bundle.run`` is ``create_workflow(ConfigWorkflow, ...)`` + ``initialize`` / ``run`` / ``finalize``;
    this does the same with ``logging_file=False``: otherwise every run would re-apply the bundle's
    ``logging.conf`` with ``fileConfig``, which replaces the root logger's handlers (a script's log file)
    each time. Overrides go to ``ConfigParser.update`` exactly as the CLI's do.

    Returns:
        what the workflow's ``run`` returns (the values of the ``run_id`` expressions).
    """
    import torch
    from monai.bundle import ConfigWorkflow

    saved_path = list(sys.path)  # ConfigWorkflow.run inserts the bundle root into sys.path on every call
    workflow = ConfigWorkflow(config_file=[str(f) for f in config_files],
                              meta_file=None if meta_file is None else str(meta_file), logging_file=False,
                              run_id=run_id, workflow_type=workflow_type, **dict(overrides))
    try:
        workflow.initialize()
        result = workflow.run()
        workflow.finalize()
        return result
    finally:
        close_tensorboard(workflow)
        sys.path[:] = saved_path
        del workflow
        gc.collect()  # the network, optimiser and data loaders of this run go before the next one starts
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def one_line(exc: BaseException) -> str:
    """``"<Type>: <first line>"`` of the exception that says what went wrong: the innermost one this
    package raised, else the innermost explicit cause (MONAI wraps a failing config expression in a
    ``RuntimeError`` that names the expression, not the problem)."""
    cause = project_cause(exc)
    if cause is None:
        cause = exc
        while cause.__cause__ is not None and cause.__cause__ is not cause:
            cause = cause.__cause__
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


# ---------------------------------------------------------------------------------------------------------
# logging and files
# ---------------------------------------------------------------------------------------------------------
class DropMessage(logging.Filter):
    """Drop the records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextmanager
def bundle_logging(log_file: str | os.PathLike) -> Iterator[None]:
    """Root logger at INFO to stdout (the bundles' ``logging.conf`` format) and to ``log_file`` (appended).

    The bundles' training and validation figures are logged through ignite / MONAI loggers; this shows
    them as the bundle CLI does and keeps them in the log file. Undone on exit (tests call scripts' ``main``).
    """
    import inspect

    from monai.apps.utils import get_logger
    from monai.handlers import StatsHandler

    # The bundles' train_loss / val_* lines go to StatsHandler's logger, made when a bundle builds the
    # handler; make it now, as MONAI does (own stdout handler, no propagation), so the log file can join it.
    get_logger(inspect.signature(StatsHandler).parameters["name"].default)

    root = logging.getLogger()
    saved_level = root.level
    fmt = logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    to_file = logging.FileHandler(log_file, encoding="utf-8")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout), to_file]
    for h in handlers:
        h.setFormatter(fmt)
        h.setLevel(logging.INFO)
        root.addHandler(h)
    root.setLevel(logging.INFO)
    # MONAI's loggers (the StatsHandler's lines among them) print to stdout themselves and do not
    # propagate to the root logger: give them the log file too.
    monai_loggers = [lg for name, lg in logging.root.manager.loggerDict.items()
                     if name.startswith("monai") and isinstance(lg, logging.Logger) and not lg.propagate]
    for lg in monai_loggers:
        lg.addHandler(to_file)
    # logging_file=False makes every ConfigWorkflow warn that it skips logging: say it once, not per run.
    quiet = DropMessage("Logging file is set to False")
    workflows_logger = logging.getLogger("monai.bundle.workflows")
    workflows_logger.addFilter(quiet)
    try:
        yield
    finally:
        workflows_logger.removeFilter(quiet)
        for lg in monai_loggers:
            lg.removeHandler(to_file)
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(saved_level)
