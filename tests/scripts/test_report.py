"""scripts/report.py (monai_wsseg.io.report_html): a static HTML report of a cohort run, rendered in headless
Chromium (Debian's package; ``scripts/setup_test_tools.sh`` installs it): the screenshot is not blank and every
image loads; a missing input is refused in one line."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_wsseg.mil.sweep import load_sweep
from monai_wsseg.mil.sweep_tables import plot_matrix
from monai_wsseg.synthetic.generator import make_cohort
from tests.conftest import PROJECT_ROOT, load_script

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="chromium not installed (run `bash scripts/setup_test_tools.sh` "
                                           "as root: it installs Debian's chromium package)")


def chromium(*args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--allow-file-access-from-files", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def image_counts(page: Path) -> tuple[int, int]:
    """(images, broken images) as the report's own load check writes them on <body>, from the DOM dump."""
    dom = chromium("--dump-dom", page.as_uri()).stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    broken = re.search(r'data-images-broken="(\d+)"', dom)
    assert total and broken, f"the load check did not run:\n{dom[:1000]}"
    return int(total.group(1)), int(broken.group(1))


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory) -> dict[str, Path]:
    """Maps of a 2-slide cohort (a random network through the real writers), an evaluation table, a sweep."""
    from monai_wsseg.inference.cohort import MapOutputs, cohort_slides, run_cohort
    from monai_wsseg.inference.engine import WSIInferer
    from monai_wsseg.mil.evaluation import CSV_COLUMNS
    from monai_wsseg.networks.fcn import ResNetFCN

    root = tmp_path_factory.mktemp("report")
    make_cohort(root / "cohort", n_tumor=1, n_normal=1, size=(512, 512), seed=7, splits=["test", "test"])
    torch.manual_seed(0)
    net = ResNetFCN("resnet18", num_classes=1, output_stride=16).eval()
    inferer = WSIInferer(net, mpp=2.0, stride=16, tile=256, halo=32, num_workers=0, tissue_mpp=16.0, progress=False)
    slides = cohort_slides(root / "cohort")
    run_cohort(inferer, slides, root / "maps", MapOutputs())
    (root / "evaluation").mkdir()
    with open(root / "evaluation" / "evaluation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        for i, slide in enumerate(slides):
            writer.writerow({"scope": "slide", "slide": str(slide), "label": int("tumor" in slide.name),
                             "auc_without_background": 0.9 + i / 100, "f1": 0.8, "threshold": 0.6})
        writer.writerow({"scope": "pooled", "slides": 2, "auc_without_background": 0.91, "auc_with_background": 0.93,
                         "precision": 0.9, "recall": 0.7, "f1": 0.79, "dice": 0.79, "threshold": 0.6})
    definition = load_sweep(PROJECT_ROOT / "configs" / "sweep" / "alpha_beta.json")
    (root / "sweep").mkdir()
    results = [{"alpha": a, "beta": b, "auc_without_background": 0.8 + a / 10, "precision": 0.9, "recall": 0.5 + b / 2,
                "f1": 0.7, "status": "done"} for a in (0.2, 0.4) for b in (0.0, 0.2) if a + b <= 1]
    with open(root / "sweep" / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    plot_matrix(results, root / "sweep" / "sweep.png", definition.alphas, definition.betas, title="test sweep")
    return {"root": root, "maps": root / "maps", "evaluation": root / "evaluation", "sweep": root / "sweep"}


def test_report_lists_every_slide_with_metrics_and_links(cohort_run):
    page = load_script("report").main(["--maps_dir", str(cohort_run["maps"]),
                                       "--evaluation_dir", str(cohort_run["evaluation"]),
                                       "--sweep_dir", str(cohort_run["sweep"]),
                                       "--output", str(cohort_run["root"] / "r" / "report.html")])
    text = page.read_text()
    for tif in cohort_run["maps"].glob("*.tif"):
        assert f'href="../maps/{tif.name}"' in text
        assert f'href="../maps/{tif.stem}.geojson"' in text
        assert f'src="../maps/{tif.stem}.png"' in text
    assert "0.9100" in text and "0.9000" in text  # pooled and per-slide AUCs
    assert "α = 0.2" in text and "β = 0.2" in text and "sweep.png" in text


@needs_chromium
def test_report_renders_in_headless_chromium(cohort_run, tmp_path):
    page = load_script("report").main(["--maps_dir", str(cohort_run["maps"]),
                                       "--evaluation_dir", str(cohort_run["evaluation"]),
                                       "--sweep_dir", str(cohort_run["sweep"]),
                                       "--output", str(cohort_run["root"] / "report.html")])
    shot = tmp_path / "report.png"
    proc = chromium(f"--screenshot={shot}", "--window-size=1280,1800", page.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.std() > 20  # not a blank page
    assert (np.abs(pixels - pixels[0, 0]).sum(-1) > 60).mean() > 0.05  # a real share of the page is drawn
    total, broken = image_counts(page)
    assert total == 3 and broken == 0  # two map thumbnails and the sweep figure, all loaded


@needs_chromium
def test_a_missing_image_is_reported_by_the_page(cohort_run, tmp_path):
    maps = tmp_path / "maps"
    shutil.copytree(cohort_run["maps"], maps)
    page = load_script("report").main(["--maps_dir", str(maps), "--output", str(tmp_path / "report.html")])
    next(maps.glob("*.png")).unlink()  # the report was moved without one of its images
    total, broken = image_counts(page)
    assert (total, broken) == (2, 1)


def test_a_patch_evaluation_table_and_embedded_images(cohort_run, tmp_path):
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "evaluation.csv").write_text("row,miou,fwiou,acc\nsegmentation,0.652,0.646,0.788\n")
    page = load_script("report").main(["--maps_dir", str(cohort_run["maps"]), "--evaluation_dir", str(tmp_path / "ev"),
                                "--output", str(tmp_path / "report.html"), "--embed"])
    text = page.read_text()
    assert "<th class=\"name\">row</th>" in text and "0.6520" in text  # a table without scope is shown whole
    assert text.count('src="data:image/png;base64,') == 2  # one file to share: both thumbnails inside


def test_a_missing_folder_or_table_is_refused_in_one_line(cohort_run, tmp_path, capsys):
    for args, problem in ((["--maps_dir", str(tmp_path / "nosuch")], "nosuch: no such maps folder"),
                          (["--maps_dir", str(cohort_run["maps"]), "--evaluation_dir", str(tmp_path)],
                           "evaluation.csv: evaluation table not found")):
        with pytest.raises(SystemExit) as exc:
            load_script("report").main([*args, "--output", str(tmp_path / "report.html")])
        assert exc.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("refused: ") and problem in error and "\n" not in error
    assert not (tmp_path / "report.html").exists()
