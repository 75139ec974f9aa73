"""Model-zoo checks for the project's bundles, each failing with one line that names the file at fault.

The MONAI model zoo accepts a bundle folder when it holds the files the zoo requires, its
``configs/metadata.json`` passes the metadata schema, the version it declares is the newest entry of its
``changelog``, its ``large_files.yml`` lists each weights file with a path, a URL and a hash, and its
train and inference workflows expose the zoo's required properties (``ConfigWorkflow.check_properties``).
:func:`check_bundle` runs the static checks (no network, no dataset) and is what
``scripts/package_bundles.py`` calls before it writes an archive; :func:`check_workflow_properties`,
:func:`check_net_in_out` and :func:`export_torchscript` need the bundle's components and run in the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REQUIRED_FILES",
    "BundleCheckError",
    "bundle_name",
    "check_bundle",
    "check_changelog",
    "check_files",
    "check_large_files",
    "check_metadata",
    "check_net_in_out",
    "check_version_bump",
    "check_workflow_properties",
    "export_torchscript",
    "file_hash",
    "parse_version",
]

#: Files the model zoo requires in every bundle folder (paths relative to the bundle root).
REQUIRED_FILES: tuple[str, ...] = (
    "LICENSE",
    "large_files.yml",
    "configs/metadata.json",
    "configs/inference.json",
    "docs/README.md",
)

#: The schema kept in the project, so ``verify_metadata`` runs offline (``--filepath``).
DEFAULT_SCHEMA = Path(__file__).resolve().parent / "metadata_schema.json"  # package data: found installed too

#: Fields each ``large_files.yml`` entry needs for ``python -m monai.bundle download_large_files``.
LARGE_FILE_FIELDS: tuple[str, ...] = ("path", "url", "hash_val", "hash_type")


class BundleCheckError(ValueError):
    """A bundle is not fit for the model zoo; the message names the file and what to change."""


def parse_version(version: str, where: str = "version") -> tuple[int, int, int]:
    """``"1.2.3"`` → ``(1, 2, 3)``; anything else is a :class:`BundleCheckError` naming ``where``."""
    parts = str(version).split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise BundleCheckError(f"{where}: version {version!r} is not MAJOR.MINOR.PATCH (e.g. 0.1.0)")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _metadata(bundle_dir: Path) -> dict:
    path = bundle_dir / "configs" / "metadata.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleCheckError(f"{path}: missing; the model zoo requires configs/metadata.json") from None
    except json.JSONDecodeError as exc:
        raise BundleCheckError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def bundle_name(bundle_dir: str | os.PathLike) -> str:
    """The bundle's zoo name: its folder name (the zoo names archives ``<name>_v<version>.zip``)."""
    return Path(bundle_dir).resolve().name


def check_files(bundle_dir: str | os.PathLike) -> None:
    """Every file of :data:`REQUIRED_FILES` exists (and is not empty) under ``bundle_dir``."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleCheckError(f"{root}: no such bundle folder")
    for rel in REQUIRED_FILES:
        path = root / rel
        if not path.is_file():
            raise BundleCheckError(f"{path}: missing; the model zoo requires {rel} in every bundle")
        if path.stat().st_size == 0:
            raise BundleCheckError(f"{path}: empty; the model zoo requires {rel} with content")


def check_changelog(metadata: dict, where: str = "configs/metadata.json") -> None:
    """The declared ``version`` is a ``changelog`` entry, and the newest one.

    A release changes ``version`` and adds its changelog line together; a version that is missing from
    the changelog, or older than its newest entry, means one of the two was forgotten.
    """
    version = metadata.get("version")
    if version is None:
        raise BundleCheckError(f"{where}: no 'version'")
    current = parse_version(version, where)
    changelog = metadata.get("changelog")
    if not isinstance(changelog, dict) or not changelog:
        raise BundleCheckError(f"{where}: no 'changelog' (the model zoo needs one entry per version)")
    entries = {parse_version(v, f"{where} changelog"): v for v in changelog}
    if version not in changelog:
        raise BundleCheckError(f"{where}: version {version} has no changelog entry; add "
                               f"\"{version}\": \"<what changed>\" to 'changelog'")
    newest = max(entries)
    if newest > current:
        raise BundleCheckError(f"{where}: version {version} is older than the newest changelog entry "
                               f"{entries[newest]}; bump 'version' to {entries[newest]}")
    if not str(changelog[version]).strip():
        raise BundleCheckError(f"{where}: the changelog entry of {version} is empty")


def check_version_bump(metadata: dict, released: dict | None, changed: bool,
                       where: str = "configs/metadata.json") -> None:
    """A bundle that differs from its released version must declare a newer version than it.

    Args:
        metadata: the bundle's metadata now.
        released: the metadata of the last released archive (``None``: nothing released yet).
        changed: whether any file differs from that release.
    """
    if released is None:
        return
    now, then = parse_version(metadata["version"], where), parse_version(released["version"], "released archive")
    if now < then:
        raise BundleCheckError(f"{where}: version {metadata['version']} is older than the released "
                               f"{released['version']}")
    if changed and now == then:
        raise BundleCheckError(f"{where}: files changed since release {released['version']} but the version was "
                               f"not bumped; raise 'version' and add its 'changelog' entry")


def check_metadata(bundle_dir: str | os.PathLike, schema: str | os.PathLike | None = None) -> dict:
    """``configs/metadata.json`` passes ``verify_metadata`` against the project's schema (offline), its
    changelog matches its version, and each output's ``channel_def`` names one class per channel.

    Returns the metadata.
    """
    from monai.bundle import verify_metadata

    root = Path(bundle_dir)
    path = root / "configs" / "metadata.json"
    metadata = _metadata(root)
    schema = Path(schema) if schema is not None else DEFAULT_SCHEMA
    if not schema.is_file():
        # verify_metadata would download the schema named in metadata.json; the checks never go online.
        raise BundleCheckError(f"{schema}: metadata schema not found (the check runs offline against it)")
    try:
        # The schema is local, so its hash is its own: passing it skips verify_metadata's download attempt
        # and its 'integrity is NOT verified' warning.
        verify_metadata(meta_file=str(path), filepath=str(schema), hash_val=file_hash(schema))
    except ValueError as exc:
        raise BundleCheckError(f"{path}: fails the metadata schema: {' '.join(str(exc).split())[:300]}") from None
    check_changelog(metadata, str(path))
    for name, tensor in metadata["network_data_format"]["outputs"].items():
        channels = tensor.get("channel_def", {})
        if len(channels) != tensor["num_channels"] or not all(str(v).strip() for v in channels.values()):
            raise BundleCheckError(f"{path}: output '{name}' has {tensor['num_channels']} channels but channel_def "
                                   f"names {len(channels)}; name the class of every channel")
    return metadata


def file_hash(path: str | os.PathLike, hash_type: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(hash_type)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_large_files(bundle_dir: str | os.PathLike) -> list[dict]:
    """``large_files.yml`` is a ``large_files`` list whose entries each give path, url, hash_val and
    hash_type, with paths inside the bundle; a listed file that is present must match its hash.

    Returns the entries.
    """
    import yaml

    root = Path(bundle_dir)
    path = root / "large_files.yml"
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BundleCheckError(f"{path}: missing; the model zoo requires large_files.yml") from None
    except yaml.YAMLError as exc:
        raise BundleCheckError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(content, dict) or not isinstance(content.get("large_files"), list):
        raise BundleCheckError(f"{path}: needs a top-level 'large_files' list (empty when no weights are published)")
    entries = content["large_files"]
    for i, entry in enumerate(entries):
        missing = [k for k in LARGE_FILE_FIELDS if not isinstance(entry, dict) or not str(entry.get(k, "")).strip()]
        if missing:
            raise BundleCheckError(f"{path}: entry {i} lacks {', '.join(missing)} (each weights file needs "
                                   f"{', '.join(LARGE_FILE_FIELDS)})")
        target = (root / entry["path"]).resolve()
        if root.resolve() not in target.parents:
            raise BundleCheckError(f"{path}: entry {i} path {entry['path']!r} leaves the bundle folder")
        if entry["hash_type"] not in hashlib.algorithms_available:
            raise BundleCheckError(f"{path}: entry {i} hash_type {entry['hash_type']!r} is unknown")
        if target.is_file() and file_hash(target, entry["hash_type"]) != str(entry["hash_val"]).lower():
            raise BundleCheckError(f"{path}: {entry['path']} does not match its {entry['hash_type']} hash_val")
    return entries


def check_bundle(bundle_dir: str | os.PathLike, schema: str | os.PathLike | None = None) -> dict:
    """The static zoo checks of a bundle folder (files, metadata, changelog, large files); returns the
    metadata. Raises :class:`BundleCheckError` at the first problem."""
    check_files(bundle_dir)
    metadata = check_metadata(bundle_dir, schema)
    check_large_files(bundle_dir)
    return metadata


def check_workflow_properties(config_files: Sequence[str | os.PathLike], workflow_type: str,
                              meta_file: str | os.PathLike | None = None, **override: Any) -> None:
    """``ConfigWorkflow(...).check_properties()`` finds every property the zoo requires of a ``"train"`` or
    ``"infer"`` workflow. Each property is instantiated, so ``override`` must point ``dataset_dir`` at
    data that exists (and may shrink the network).
    """
    from monai.bundle import ConfigWorkflow

    files = [str(f) for f in config_files]
    # The bundle's own files (its stain reference) resolve against bundle_root, which the zoo CLI sets from
    # --bundle_root; here it is the folder above the first config's configs/.
    override.setdefault("bundle_root", str(Path(files[0]).resolve().parents[1]))
    workflow = ConfigWorkflow(config_file=files, meta_file=None if meta_file is None else str(meta_file),
                              logging_file=False, workflow_type=workflow_type, **override)
    workflow.initialize()
    from monai.utils import BundleProperty, BundlePropertyConfig

    # check_properties raises a bare KeyError at the first absent required ID; list them all instead.
    missing: list[str] | None = [name for name, prop in workflow.properties.items()
               if prop.get(BundleProperty.REQUIRED) and prop.get(BundlePropertyConfig.ID) not in workflow.parser]
    # Then every property is built, and optional ones must be referenced under their zoo IDs.
    missing = missing or workflow.check_properties()
    if missing:
        raise BundleCheckError(f"{files[0]}: the {workflow_type} workflow lacks the model-zoo properties "
                               f"{', '.join(missing)}")


def check_net_in_out(config_files: Sequence[str | os.PathLike], meta_file: str | os.PathLike,
                     net_id: str = "network_def", n: int = 1, **override: Any) -> None:
    """``verify_net_in_out``: the network built from the configs maps the input that ``metadata.json``
    describes (``16*n`` px) to its declared output channels and dtype."""
    from monai.bundle import verify_net_in_out

    files = [str(f) for f in config_files]
    try:
        verify_net_in_out(net_id=net_id, meta_file=str(meta_file), config_file=files, device="cpu", n=n, **override)
    except ValueError as exc:
        raise BundleCheckError(f"{meta_file}: network '{net_id}' of {files[0]} does not match "
                               f"network_data_format: {exc}") from None


def export_torchscript(config_files: Sequence[str | os.PathLike], ckpt_file: str | os.PathLike,
                       filepath: str | os.PathLike, meta_file: str | os.PathLike, net_id: str = "network_def",
                       input_shape: Sequence[int] | None = None, **override: Any) -> Path:
    """``ckpt_export``: the checkpoint's network as TorchScript with the metadata and configs inside.

    ``input_shape`` given: the network is traced on a random input of that shape (scripting otherwise).
    """
    from monai.bundle import ckpt_export

    files = [str(f) for f in config_files]
    ckpt_export(net_id=net_id, filepath=str(filepath), ckpt_file=str(ckpt_file), meta_file=str(meta_file),
                config_file=files, use_trace=input_shape is not None,
                input_shape=list(input_shape) if input_shape else None, **override)
    return Path(filepath)
