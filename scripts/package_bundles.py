"""Package the project's bundles as the MONAI model zoo distributes them: ``<name>_v<version>.zip``.

Each archive holds one top-level folder ``<name>/`` with the bundle's files (``configs/``, ``docs/``,
``LICENSE``, ``large_files.yml``, ...) and nothing a run leaves behind (``runs/``, ``eval/``, caches).
Before writing, the bundle must pass the static zoo checks of :mod:`monai_wsseg.bundle.checks`
(required files, metadata against ``monai_wsseg/bundle/metadata_schema.json`` offline, changelog entry of the
version, large-files entries). An archive already in the output folder is the release of record: a
bundle whose files differ from the newest archive of its name without a newer version is refused
(bump ``version`` and add its changelog entry), and an identical one is left as it is.

Weights: ``--weights NAME=PATH --weights_url NAME=URL`` puts ``PATH`` in the archive as
``models/model.pt`` and lists it in the archive's ``large_files.yml`` with that URL and its md5, so
``python -m monai.bundle download_large_files`` can fetch and verify it where the file is left out.

Archives are byte-for-byte reproducible (sorted entries, fixed timestamps) and written atomically.

Usage::

    python scripts/package_bundles.py [--output_dir dist] [--bundles mil_tumor_segmentation ...]
        [--weights mil_tumor_segmentation=runs/latest/models/model.pt
         --weights_url mil_tumor_segmentation=https://host/mil_tumor_segmentation_model.pt]

Exit status 1 with one line per refused bundle (naming the file to fix); 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from monai_wsseg.bundle.checks import (
    BundleCheckError,
    bundle_name,
    check_bundle,
    check_version_bump,
    file_hash,
    parse_version,
)
from monai_wsseg.utils.atomic import write_atomically

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Folders and files a run or a tool leaves in a bundle folder; never part of a release.
EXCLUDED_DIRS = {"runs", "eval", "__pycache__", ".ipynb_checkpoints", "models"}
EXCLUDED_SUFFIXES = (".pyc", ".tmp")
#: Zip timestamps are fixed so that the same files always give the same archive bytes.
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
WEIGHTS_PATH = "models/model.pt"


def bundle_files(bundle_dir: Path) -> list[Path]:
    """The files of a bundle that go into its archive (relative paths, sorted)."""
    files = []
    for path in sorted(bundle_dir.rglob("*")):
        rel = path.relative_to(bundle_dir)
        if path.is_dir() or any(p in EXCLUDED_DIRS or p.startswith(".") for p in rel.parts):
            continue
        if path.suffix in EXCLUDED_SUFFIXES:
            continue
        files.append(rel)
    return files


def archive_contents(bundle_dir: Path, weights: Path | None = None, weights_url: str | None = None) -> dict[str, bytes]:
    """``{archive path: bytes}`` for a bundle (weights added and listed in ``large_files.yml`` when given)."""
    import yaml

    name = bundle_name(bundle_dir)
    contents = {f"{name}/{rel.as_posix()}": (bundle_dir / rel).read_bytes() for rel in bundle_files(bundle_dir)}
    if weights is not None:
        if not weights.is_file():
            raise BundleCheckError(f"{weights}: weights file not found")
        if not weights_url:
            raise BundleCheckError(f"{bundle_dir}: --weights needs --weights_url {name}=URL (large_files.yml "
                                   "lists where the weights can be downloaded)")
        contents[f"{name}/{WEIGHTS_PATH}"] = weights.read_bytes()
        listing = yaml.safe_load(contents[f"{name}/large_files.yml"]) or {}
        entries = [e for e in listing.get("large_files") or [] if e.get("path") != WEIGHTS_PATH]
        entries.append({"path": WEIGHTS_PATH, "url": weights_url, "hash_val": file_hash(weights, "md5"),
                        "hash_type": "md5"})
        contents[f"{name}/large_files.yml"] = yaml.safe_dump({"large_files": entries}, sort_keys=False).encode()
    return contents


def read_archive(path: Path) -> dict[str, bytes]:
    """The files of a zip archive by name (folders left out)."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


def released(output_dir: Path, name: str) -> Path | None:
    """The newest archive of ``name`` in ``output_dir`` (by version), or ``None``."""
    best: tuple[tuple[int, int, int], Path] | None = None
    for path in output_dir.glob(f"{name}_v*.zip"):
        try:
            version = parse_version(path.stem[len(name) + 2:], str(path))
        except BundleCheckError:
            continue
        if best is None or version > best[0]:
            best = (version, path)
    return None if best is None else best[1]


def write_archive(path: Path, contents: dict[str, bytes]) -> None:
    """Write a reproducible zip atomically (a temporary name renamed when complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arcname in sorted(contents):
                info = zipfile.ZipInfo(arcname, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, contents[arcname])

    write_atomically(path, write)


def package(bundle_dir: Path, output_dir: Path, weights: Path | None = None, weights_url: str | None = None,
            schema: Path | None = None) -> tuple[Path, str]:
    """Check and package one bundle; returns the archive path and ``"written"`` or ``"unchanged"``."""
    metadata = check_bundle(bundle_dir, schema)
    name = bundle_name(bundle_dir)
    target = output_dir / f"{name}_v{metadata['version']}.zip"
    contents = archive_contents(bundle_dir, weights, weights_url)
    last = released(output_dir, name)
    if last is not None:
        before = read_archive(last)
        meta_before = json.loads(before[f"{name}/configs/metadata.json"])
        check_version_bump(metadata, meta_before, changed=before != contents,
                           where=str(bundle_dir / "configs" / "metadata.json"))
        if last == target and before == contents:
            return target, "unchanged"
    write_archive(target, contents)
    return target, "written"


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"{option} takes NAME=VALUE, got {v!r}")
        out[key] = value
    return out


def find_bundles(bundles_dir: Path, names: Sequence[str] | None) -> list[Path]:
    """Bundle folders (those with a ``configs`` folder) under ``bundles_dir``, or the ones named."""
    if names:
        return [bundles_dir / n for n in names]
    return sorted(p for p in bundles_dir.iterdir() if (p / "configs").is_dir())


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Package the bundles (``argv``: the options; default ``sys.argv[1:]``); returns the archives written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles_dir", type=Path, default=PROJECT_ROOT / "bundles")
    parser.add_argument("--bundles", nargs="*", help="bundle folder names (default: every bundle)")
    parser.add_argument("--output_dir", type=Path, default=PROJECT_ROOT / "dist")
    parser.add_argument("--schema", type=Path, default=None, help="metadata schema (default: the project's)")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--weights_url", action="append", default=[], metavar="NAME=URL")
    args = parser.parse_args(argv)
    weights, urls = _pairs(args.weights, "--weights"), _pairs(args.weights_url, "--weights_url")
    written, refused = [], []
    for bundle_dir in find_bundles(args.bundles_dir, args.bundles):
        start = time.perf_counter()
        name = bundle_dir.name
        try:
            path, status = package(bundle_dir, args.output_dir, Path(weights[name]) if name in weights else None,
                                   urls.get(name), args.schema)
        except BundleCheckError as exc:
            refused.append(str(exc))
            print(f"refused: {exc}", file=sys.stderr)
            continue
        written.append(path)
        print(f"{status}: {path} ({path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - start:.1f} s)")
    if refused:
        raise SystemExit(1)
    return written


if __name__ == "__main__":
    main()
