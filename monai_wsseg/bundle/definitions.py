"""Run definitions: the JSON files under ``configs/`` that say what a multi-run script runs.

A run definition names a bundle, the config files each profile merges for each step, and the settings of
the runs (the (α, β) grid of :mod:`monai_wsseg.mil.sweep`, the Table III runs of
:mod:`monai_wsseg.wsss.ablation`); the stability protocols (:mod:`.stability_protocol`) are read the same
way. This module holds what their loaders share: reading the file, refusing unknown or missing keys, paths
relative to ``root`` and the per-profile config lists. Every error is a ``ValueError`` (or
``FileNotFoundError``) of one line naming the file and the key, e.g.
``configs/sweep/alpha_beta.json: alphas[2]: must be a number in (0, 1], got 'x'``.

Common keys::

    "description": "free text",                     (optional)
    "root": "../..",                                 (paths below are relative to it; it is relative to
                                                      the file's folder; default ".")
    "bundle": "bundles/<name>",                      (the bundle folder, holding configs/)
    "configs": {"cpu": {"<step>": ["a.json", ...], ...}, "gpu": {...}}
                                                     (config files in bundle/configs, later overlaying
                                                      earlier, per profile and step)

Standard library only: cheap to import.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["PROFILES", "check_keys", "finite_number", "keyword_names", "object_of", "profile_configs",
           "read_definition", "resolve_path", "text"]

#: Profiles a definition gives config lists for: ``cpu`` (small settings) and ``gpu`` (the paper's).
PROFILES: tuple[str, ...] = ("cpu", "gpu")


def read_definition(path: str | os.PathLike, *, what: str = "run definition") -> tuple[dict[str, Any], Path]:
    """The JSON object of ``path`` and its ``root`` folder (resolved).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON, not an object, or a ``root`` that is not a non-empty string.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {what} must be a JSON object, got {type(data).__name__}")
    try:
        root = text(data.get("root", "."), "root")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return data, (path.parent / root).resolve()


def check_keys(data: Mapping[str, Any], known: Iterable[str], required: Iterable[str] = (),
               where: str = "") -> None:
    """Refuse keys of ``data`` outside ``known`` (a typo would silently do nothing) and missing ``required``.

    Raises:
        ValueError: ``"<where>: unknown key(s) [...] (known: [...])"`` or ``"<where>: missing key(s) [...]"``.
    """
    prefix = f"{where}: " if where else ""
    known = set(known)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{prefix}unknown key(s) {unknown} (known: {sorted(known)})")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{prefix}missing key(s) {missing}")


def keyword_names(fn: Callable[..., Any], skip: Iterable[str] = ()) -> list[str]:
    """Names of ``fn``'s parameters but ``skip``: the keys a definition may give as its keyword arguments."""
    import inspect

    skip = set(skip)
    return [k for k in inspect.signature(fn).parameters if k not in skip]


def text(value: Any, key: str) -> str:
    """``value`` when it is a non-empty string, else ``ValueError`` naming ``key``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: must be a non-empty string, got {value!r}")
    return value


def finite_number(value: Any, key: str) -> float:
    """``value`` as a float when it is a finite JSON number (not a boolean), else ``ValueError`` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key}: must be a finite number, got {value!r}")
    return float(value)


def object_of(value: Any, key: str) -> dict[str, Any]:
    """``value`` when it is a JSON object, else ``ValueError`` naming ``key``."""
    if not isinstance(value, dict):
        raise ValueError(f"{key}: must be an object, got {type(value).__name__}")
    return value


def resolve_path(root: Path, value: Any, key: str) -> Path:
    """``root / value`` resolved, ``value`` a non-empty string."""
    return (root / text(value, key)).resolve()


def profile_configs(value: Any, config_dir: Path, steps: Iterable[str],
                    key: str = "configs") -> dict[str, dict[str, tuple[Path, ...]]]:
    """``{profile: {step: (config files...)}}`` from a definition's ``configs`` object.

    Every profile of :data:`PROFILES` must give a non-empty list of file names for every step of ``steps``
    (and no other step); each file must exist in ``config_dir``.

    Raises:
        ValueError: a missing or unknown profile or step, a name that is not a non-empty string, or a file
            that is not in ``config_dir`` (``"configs.cpu.train: .../cpu.json: no such bundle config"``).
    """
    steps = tuple(steps)
    configs = object_of(value, key)
    check_keys(configs, PROFILES, PROFILES, key)
    out: dict[str, dict[str, tuple[Path, ...]]] = {}
    for profile in PROFILES:
        where = f"{key}.{profile}"
        per_step = object_of(configs[profile], where)
        check_keys(per_step, steps, steps, where)
        out[profile] = {}
        for step in steps:
            names = per_step[step]
            if not isinstance(names, list) or not names:
                raise ValueError(f"{where}.{step}: must be a non-empty list of config file names, got {names!r}")
            files = tuple(config_dir / text(n, f"{where}.{step}") for n in names)
            for f in files:
                if not f.is_file():
                    raise ValueError(f"{where}.{step}: {f}: no such bundle config")
            out[profile][step] = files
    return out
