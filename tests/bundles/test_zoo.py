"""Model-zoo checks of both bundles, in process: metadata against the project's schema (offline), required
files, changelog, large files, the zoo's train / infer workflow properties, ``verify_net_in_out``, and a
TorchScript export (``ckpt_export``) that gives the eager network's output on a real tile.

Each check runs on tiny synthetic data and networks shrunk by the CPU overlays: the properties are
instantiated (that is how ``check_properties`` proves them), so they need data that exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_wsseg.bundle.checks import (
    BundleCheckError,
    check_bundle,
    check_changelog,
    check_net_in_out,
    check_version_bump,
    check_workflow_properties,
    export_torchscript,
)
from monai_wsseg.synthetic.generator import make_cohort, make_patch_set
from tests.conftest import CMU_SLIDE, PROJECT_ROOT

BUNDLES = PROJECT_ROOT / "bundles"
MIL = BUNDLES / "mil_tumor_segmentation"
WSSS = BUNDLES / "wsss_tissue_segmentation"
SCHEMA = BUNDLES.parent / "monai_wsseg" / "bundle" / "metadata_schema.json"
MIL_TINY = {"backbone": "resnet18", "bag_size": 4, "patch_size": 32, "mpp": 2.0, "num_workers": 0,
            "infer_tile": 256, "infer_halo": 32, "infer_batch_size": 2, "tissue_mpp": 16.0}
WSSS_TINY = {"width": 0.125, "backbone": "resnet18", "num_workers": 0, "batch_size": 2}


def configs(bundle: Path, *names: str) -> list[str]:
    return [str(bundle / "configs" / n) for n in names]


def network(bundle: Path, files: list[str], net_id: str = "network_def", **override) -> torch.nn.Module:
    """A bundle's network as its configs build it (random weights)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(bundle, *files))
    parser.update(override)
    return parser.get_parsed_content(net_id)


def save_weights(net: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo_cohort")
    make_cohort(root, n_tumor=2, n_normal=2, size=(512, 512), seed=3, splits=["train", "val", "train", "test"])
    return root


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    from monai_wsseg.io.palettes import class_palette, write_palette_mask

    data = make_patch_set(tmp_path_factory.mktemp("zoo_patches") / "p", n_train=4, n_val=2, n_test=2, size=64, seed=2)
    palette = class_palette(["TE", "NEC", "LYM", "TAS"])
    for layer in ("b4_3", "b5_2", "bn7"):  # stand-ins for the pseudo-mask job's output
        for image in (data / "training").glob("*.png"):
            write_palette_mask(data / "run" / "pseudo" / layer / image.name, np.zeros((64, 64), np.uint8), palette)
    return data


@pytest.fixture(scope="module")
def real_tile() -> np.ndarray:
    """A 224 px RGB tile of tissue from a real slide (the synthetic demo texture when it is absent)."""
    from monai_wsseg.wsi import open_slide

    if not CMU_SLIDE.exists():
        pytest.skip(f"real test data not found: {CMU_SLIDE} (clone the project beside shared/)")
    with open_slide(CMU_SLIDE) as slide:
        w, h = slide.dimensions
        return np.asarray(slide.read_region((w // 2 - 224, h // 2 - 224), (224, 224), mpp=slide.mpp))[..., :3]


# ---- static checks: files, metadata, changelog, large files ------------------------------------------

@pytest.mark.parametrize("bundle", [MIL, WSSS], ids=lambda b: b.name)
def test_bundle_passes_the_static_zoo_checks(bundle):
    metadata = check_bundle(bundle, SCHEMA)
    assert metadata["version"] in metadata["changelog"]
    assert set(metadata["network_data_format"]["outputs"]["pred"]["channel_def"].values()) != {""}


def test_verify_metadata_cli_runs_offline_with_the_project_schema(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file",
                           str(MIL / "configs" / "metadata.json"), "--filepath", str(SCHEMA)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "metadata is verified with no error" in proc.stdout + proc.stderr


@pytest.fixture()
def bundle_copy(tmp_path) -> Path:
    dst = tmp_path / MIL.name
    shutil.copytree(MIL, dst, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return dst


@pytest.mark.parametrize("rel", ["LICENSE", "docs/README.md", "large_files.yml", "configs/inference.json"])
def test_a_missing_required_file_is_named(bundle_copy, rel):
    (bundle_copy / rel).unlink()
    with pytest.raises(BundleCheckError, match=f"{bundle_copy / rel}: missing; the model zoo requires {rel}"):
        check_bundle(bundle_copy, SCHEMA)


def _edit_metadata(bundle: Path, **changes) -> None:
    path = bundle / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_a_version_without_changelog_entry_is_refused(bundle_copy):
    _edit_metadata(bundle_copy, version="9.9.9")  # beyond any release
    with pytest.raises(BundleCheckError, match=r"metadata.json: version 9\.9\.9 has no changelog entry"):
        check_bundle(bundle_copy, SCHEMA)


def test_a_changelog_ahead_of_the_version_is_refused():
    meta = {"version": "0.1.0", "changelog": {"0.2.0": "new head", "0.1.0": "first"}}
    with pytest.raises(BundleCheckError,
                       match=re.escape("version 0.1.0 is older than the newest changelog entry 0.2.0")):
        check_changelog(meta)


def test_changed_files_need_a_version_bump():
    released = {"version": "0.1.0"}
    check_version_bump({"version": "0.1.0"}, released, changed=False)
    check_version_bump({"version": "0.1.1"}, released, changed=True)
    with pytest.raises(BundleCheckError,
                       match=re.escape("files changed since release 0.1.0 but the version was not bumped")):
        check_version_bump({"version": "0.1.0"}, released, changed=True)


def test_metadata_failing_the_schema_is_named(bundle_copy):
    _edit_metadata(bundle_copy, changelog={})
    with pytest.raises(BundleCheckError, match=re.escape("metadata.json: fails the metadata schema")):
        check_bundle(bundle_copy, SCHEMA)


def test_unnamed_output_channels_are_refused(bundle_copy):
    meta = json.loads((bundle_copy / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["outputs"]["pred"]["channel_def"] = {}
    (bundle_copy / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleCheckError, match="output 'pred' has 1 channels but channel_def names 0"):
        check_bundle(bundle_copy, SCHEMA)


def test_large_file_entries_need_url_and_hash(bundle_copy):
    (bundle_copy / "models").mkdir()
    (bundle_copy / "models" / "model.pt").write_bytes(b"weights")
    lf = bundle_copy / "large_files.yml"
    lf.write_text("large_files:\n  - path: models/model.pt\n    url: https://example.org/model.pt\n")
    with pytest.raises(BundleCheckError, match=re.escape("large_files.yml: entry 0 lacks hash_val, hash_type")):
        check_bundle(bundle_copy, SCHEMA)
    lf.write_text("large_files:\n  - path: models/model.pt\n    url: https://example.org/model.pt\n"
                  "    hash_val: 0123\n    hash_type: md5\n")
    with pytest.raises(BundleCheckError, match=re.escape("models/model.pt does not match its md5 hash_val")):
        check_bundle(bundle_copy, SCHEMA)


# ---- workflow properties ---------------------------------------------------------------------------

def test_mil_train_workflow_has_the_zoo_properties(cohort, tmp_path):
    check_workflow_properties(configs(MIL, "train.json", "cpu.json"), "train",
                              meta_file=MIL / "configs" / "metadata.json",
                              dataset_dir=str(cohort), output_dir=str(tmp_path), **MIL_TINY)


def test_mil_infer_workflow_has_the_zoo_properties(cohort, tmp_path):
    ckpt = save_weights(network(MIL, ["inference.json", "cpu.json"], **MIL_TINY), tmp_path / "model.pt")
    check_workflow_properties(configs(MIL, "inference.json", "cpu.json"), "infer",
                              meta_file=MIL / "configs" / "metadata.json", dataset_dir=str(cohort),
                              output_dir=str(tmp_path / "maps"), ckpt_path=str(ckpt), **MIL_TINY)


def test_a_workflow_lacking_a_property_is_named(cohort, tmp_path):
    config = json.loads((MIL / "configs" / "inference.json").read_text())
    del config["evaluator"]
    (tmp_path / "inference.json").write_text(json.dumps(config))
    ckpt = save_weights(network(MIL, ["inference.json", "cpu.json"], **MIL_TINY), tmp_path / "model.pt")
    with pytest.raises(BundleCheckError, match="the infer workflow lacks the model-zoo properties evaluator"):
        check_workflow_properties([str(tmp_path / "inference.json"), str(MIL / "configs" / "cpu.json")], "infer",
                                  meta_file=MIL / "configs" / "metadata.json", dataset_dir=str(cohort),
                                  ckpt_path=str(ckpt), **MIL_TINY)


@pytest.mark.parametrize("files", [["train_cls.json", "cpu.json"], ["train_seg.json", "cpu_seg.json"]],
                         ids=["train_cls", "train_seg"])
def test_wsss_train_workflows_have_the_zoo_properties(patches, files):
    check_workflow_properties(configs(WSSS, *files), "train", meta_file=WSSS / "configs" / "metadata.json",
                              dataset_dir=str(patches), output_dir=str(patches / "run"), **WSSS_TINY)


def test_wsss_infer_workflow_has_the_zoo_properties(patches, tmp_path):
    files = ["inference.json", "cpu_seg.json"]
    save_weights(network(WSSS, files, "classifier_def", **WSSS_TINY), tmp_path / "models" / "classifier.pt")
    save_weights(network(WSSS, files, "segmenter_def", **WSSS_TINY), tmp_path / "models" / "model.pt")
    check_workflow_properties(configs(WSSS, *files), "infer", meta_file=WSSS / "configs" / "metadata.json",
                              dataset_dir=str(patches), output_dir=str(tmp_path), **WSSS_TINY)


# ---- network in / out and TorchScript export -------------------------------------------------------

@pytest.mark.parametrize("bundle, files, override", [
    (MIL, ["inference.json", "cpu.json"], {"backbone": "resnet18"}),
    (WSSS, ["inference.json", "cpu_seg.json"], {}),
], ids=["mil", "wsss"])
def test_network_matches_network_data_format(bundle, files, override):
    check_net_in_out(configs(bundle, *files), bundle / "configs" / "metadata.json", n=4, **override)


def test_net_in_out_mismatch_is_named():
    with pytest.raises(BundleCheckError, match="does not match network_data_format: output channel number `1`"):
        check_net_in_out(configs(MIL, "inference.json", "cpu.json"), MIL / "configs" / "metadata.json", n=4,
                         **{"_meta_#network_data_format#outputs#pred#num_channels": 2})


def _normalised(tile: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1))).float()[None] / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("bundle, files", [
    (MIL, ["inference.json", "cpu.json"]),
    (WSSS, ["inference.json", "cpu_seg.json"]),
], ids=["mil", "wsss"])
def test_torchscript_export_gives_the_eager_output_on_a_real_tile(bundle, files, real_tile, tmp_path):
    torch.manual_seed(0)
    eager = network(bundle, files).eval()
    for m in eager.modules():  # non-trivial BN statistics, so the export must carry them too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = save_weights(eager, tmp_path / "model.pt")
    ts = export_torchscript(configs(bundle, *files), ckpt, tmp_path / "model.ts", bundle / "configs" / "metadata.json",
                            input_shape=(1, 3, 224, 224))
    exported = torch.jit.load(str(ts)).eval()
    parser_meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(bundle, *files))
    x = _normalised(real_tile, parser["mean"], parser["std"])
    with torch.no_grad():
        want, got = eager(x), exported(x)
    channels = parser_meta["network_data_format"]["outputs"]["pred"]["num_channels"]
    assert got.shape == want.shape and got.shape[1] == channels
    assert float((got - want).abs().max()) < 1e-4
    assert float(want.std()) > 0  # a real, varied output, not a constant both sides agree on
    extra = {"metadata.json": "", "inference.json": ""}
    torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == parser_meta["version"]
