"""Cohort inference: outputs per slide, skip on rerun, failures listed, sharding (kill -9: tests/faults)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from monai_wsseg.inference.cohort import CohortError, MapOutputs, run_cohort, shard
from monai_wsseg.inference.engine import WSIInferer
from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import smooth_rgb


class TinyFCN(nn.Module):
    """Stride-16 fully convolutional net; ``delay`` seconds per batch makes a run slow enough to kill."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 5, padding=2)
        self.pool = nn.AvgPool2d(16)
        self.delay, self.calls = delay, 0

    def forward(self, x):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.pool(self.conv(x))


def make_slides(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = smooth_rgb(768, 1024, seed=i)
        image[:, :400] = 245  # glass on the left: tissue detection has something to reject
        path = folder / f"slide{i}.tif"
        write_pyramidal_tiff(path, image, 0.5, quality=90)
        paths.append(path)
    return paths


def inferer(net: nn.Module) -> WSIInferer:
    return WSIInferer(net, mpp=0.5, stride=16, tile=256, halo=32, num_workers=0, progress=False)


def test_outputs_per_slide_and_rerun_skips(tmp_path):
    slides = make_slides(tmp_path / "slides", 2)
    net = TinyFCN()
    out = tmp_path / "out"
    result = run_cohort(inferer(net), slides, out)
    assert result.done == [str(s) for s in slides] and not result.failed
    for s in slides:
        for suffix in (".tif", ".png", ".geojson"):
            assert (out / f"{s.stem}{suffix}").stat().st_size > 0
        json.loads((out / f"{s.stem}.geojson").read_text())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    calls = net.calls
    again = run_cohort(inferer(net), slides, out)
    assert again.skipped == [str(s) for s in slides] and not again.done and net.calls == calls


def test_a_bad_slide_is_listed_and_does_not_stop_the_others(tmp_path):
    slides = make_slides(tmp_path / "slides", 2)
    bad = tmp_path / "slides" / "broken.svs"
    bad.write_text("not a slide")
    cohort = [slides[0], bad, slides[1]]
    with pytest.raises(CohortError, match=r"1 of 3 slides failed:\n  .*broken.svs: .*not a readable TIFF"):
        run_cohort(inferer(TinyFCN()), cohort, tmp_path / "out")
    assert (tmp_path / "out" / "slide1.tif").exists()
    result = run_cohort(inferer(TinyFCN()), cohort, tmp_path / "out", tolerate_failures=True)
    assert [p for p, _ in result.failed] == [str(bad)] and len(result.skipped) == 2


def test_unwritable_output_folder_fails_before_any_work(tmp_path):
    slides = make_slides(tmp_path / "slides", 1)
    (tmp_path / "afile").write_text("x")
    net = TinyFCN()
    with pytest.raises(ValueError, match="afile/out: output folder is not writable"):
        run_cohort(inferer(net), slides, tmp_path / "afile" / "out")
    assert net.calls == 0


def test_shards_partition_the_cohort(monkeypatch):
    items = list(range(7))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(x for part in parts for x in part) == items and all(parts)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard(items) == [1, 3, 5]
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        shard(items, 2, 2)


def test_formats_and_stem_clashes(tmp_path):
    slides = make_slides(tmp_path / "a", 1) + make_slides(tmp_path / "b", 1)
    with pytest.raises(ValueError, match="share the file stem"):
        run_cohort(inferer(TinyFCN()), slides, tmp_path / "out")
    result = run_cohort(inferer(TinyFCN()), slides[:1], tmp_path / "out", MapOutputs(formats=("tiff",)))
    assert result.done and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["slide0.tif"]


def test_cohort_slides_from_a_file_a_folder_or_a_manifest(tmp_path):
    from monai_wsseg.inference.cohort import cohort_slides

    slides = make_slides(tmp_path / "data", 2)
    assert cohort_slides(slides[0]) == [slides[0]]
    assert cohort_slides(tmp_path / "data") == slides
    (tmp_path / "data" / "manifest.csv").write_text("slide,label,split\nslide0.tif,1,train\nslide1.tif,0,test\n")
    assert cohort_slides(tmp_path / "data", split="test") == [slides[1]]
    assert len(cohort_slides(tmp_path / "data" / "manifest.csv")) == 2
    with pytest.raises(FileNotFoundError, match="nowhere: no such slide, manifest or folder"):
        cohort_slides(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape("empty: holds no manifest.csv and no slide files")):
        cohort_slides(tmp_path / "empty")


def test_the_cohort_loop_step_by_step_counts_this_ranks_shard(tmp_path):
    """CohortRun is the loop both run_cohort and the bundles' CohortEvaluator drive."""
    from monai_wsseg.inference.cohort import CohortRun

    slides = make_slides(tmp_path / "slides", 3)
    bad = tmp_path / "slides" / "broken.svs"
    bad.write_text("not a slide")
    run = CohortRun(inferer(TinyFCN()), tmp_path / "out", MapOutputs(formats=("tiff",)))
    mine = run.start([*slides, bad], rank=0, world_size=2)
    assert mine == [slides[0], slides[2]]
    assert [run.infer_slide(p, i) for i, p in enumerate(mine, 1)] == ["done", "done"]
    assert run.infer_slide(slides[0]) == "skipped"
    assert run.infer_slide(bad) == "failed"
    assert run.result.done == [str(slides[0]), str(slides[2])] and run.result.skipped == [str(slides[0])]
    with pytest.raises(CohortError, match=r"^1 of 2 slides failed:\n  .*broken.svs: "):
        run.finish()
    assert run.start(slides, rank=1, world_size=2) == [slides[1]] and run.result.done == []  # a fresh result
