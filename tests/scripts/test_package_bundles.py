"""scripts/package_bundles.py: zoo archives of both bundles; one unzipped into a fresh folder runs its inference
there; a bundle missing a required file, or changed without a version bump, is refused with a clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import PROJECT_ROOT, load_script


def version_of(bundle: Path) -> str:
    return json.loads((bundle / "configs" / "metadata.json").read_text())["version"]


def test_archives_unzip_and_infer_in_a_fresh_folder(tmp_path):
    from monai_wsseg.networks.fcn import ResNetFCN

    weights = tmp_path / "model.pt"
    torch.save(ResNetFCN("resnet18", num_classes=1, output_stride=16).state_dict(), weights)
    dist = tmp_path / "dist"
    url = (tmp_path / "hosted" / "mil_model.pt").as_uri()
    args = ["--output_dir", str(dist), "--weights", f"mil_tumor_segmentation={weights}",
            "--weights_url", f"mil_tumor_segmentation={url}"]
    written = load_script("package_bundles").main(args)
    names = sorted(p.name for p in written)
    bundles = PROJECT_ROOT / "bundles"
    assert names == sorted(f"{b}_v{version_of(bundles / b)}.zip"
                           for b in ("mil_tumor_segmentation", "wsss_tissue_segmentation"))
    again = load_script("package_bundles").main(args)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]  # reproducible, left unchanged

    archive = dist / f"mil_tumor_segmentation_v{version_of(bundles / 'mil_tumor_segmentation')}.zip"
    with zipfile.ZipFile(archive) as zf:
        members = zf.namelist()
    assert all(m.startswith("mil_tumor_segmentation/") for m in members)
    assert not [m for m in members if "/runs/" in m or "__pycache__" in m]
    fresh = tmp_path / "fresh"
    zipfile.ZipFile(archive).extractall(fresh)
    bundle = fresh / "mil_tumor_segmentation"
    for rel in ("LICENSE", "large_files.yml", "docs/README.md", "configs/metadata.json", "models/model.pt"):
        assert (bundle / rel).is_file(), rel

    # MONAI's own large-file step accepts the listing: the weights are present and match their md5.
    from monai.bundle import download_large_files

    download_large_files(bundle_path=str(bundle))

    cohort = tmp_path / "cohort"
    make_cohort(cohort, n_tumor=1, n_normal=1, size=(512, 512), seed=5, splits=["test", "test"])
    configs = bundle / "configs"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle), "--config_file",
           f"['{configs / 'inference.json'}','{configs / 'cpu.json'}']", "--dataset_dir", str(cohort),
           "--ckpt_path", str(bundle / "models" / "model.pt"), "--backbone", "resnet18", "--num_workers", "0",
           "--infer_tile", "256", "--infer_halo", "32", "--tissue_mpp", "16.0"]
    proc = subprocess.run(cmd, cwd=fresh, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    maps = bundle / "runs" / "latest" / "maps"  # the bundle's default output folder, inside the fresh copy
    stems = sorted(p.stem for p in (cohort / "slides").glob("*.tif"))
    assert sorted(p.stem for p in maps.glob("*.tif")) == stems
    assert sorted(p.stem for p in maps.glob("*.geojson")) == stems


@pytest.fixture()
def bundles_copy(tmp_path) -> Path:
    root = tmp_path / "bundles"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "monai_wsseg" / "bundle" / "metadata_schema.json", root)
    shutil.copytree(PROJECT_ROOT / "bundles" / "mil_tumor_segmentation", root / "mil_tumor_segmentation",
                    ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return root


def test_a_bundle_missing_a_required_file_is_refused(bundles_copy, tmp_path, capsys):
    (bundles_copy / "mil_tumor_segmentation" / "LICENSE").unlink()
    with pytest.raises(SystemExit) as exit_:
        load_script("package_bundles").main(["--bundles_dir", str(bundles_copy), "--output_dir", str(tmp_path / "dist"),
                     "--schema", str(bundles_copy / "metadata_schema.json")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"refused: {bundles_copy / 'mil_tumor_segmentation' / 'LICENSE'}: missing; the model zoo "
                   "requires LICENSE in every bundle")
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_a_changed_bundle_without_a_version_bump_is_refused(bundles_copy, tmp_path, capsys):
    bundle = bundles_copy / "mil_tumor_segmentation"
    args = ["--bundles_dir", str(bundles_copy), "--output_dir", str(tmp_path / "dist"),
            "--schema", str(bundles_copy / "metadata_schema.json")]
    load_script("package_bundles").main(args)
    readme = bundle / "docs" / "README.md"
    readme.write_text(readme.read_text() + "\nA change.\n")
    with pytest.raises(SystemExit):
        load_script("package_bundles").main(args)
    assert "but the version was not bumped; raise 'version' and add its 'changelog' entry" in capsys.readouterr().err

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["version"] = "9.9.9"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit):  # bumped, but the changelog was forgotten
        load_script("package_bundles").main(args)
    assert "version 9.9.9 has no changelog entry" in capsys.readouterr().err

    meta["changelog"] = {"9.9.9": "a change", **meta["changelog"]}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    written = load_script("package_bundles").main(args)
    assert [p.name for p in written] == ["mil_tumor_segmentation_v9.9.9.zip"]
