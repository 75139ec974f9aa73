"""TumorMapEvaluation end to end on a tiny synthetic cohort with oracle, reversed and noisy inferers."""

from __future__ import annotations

import csv
import dataclasses
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_wsseg.datasets.manifest import SlideRecord, load_manifest
from monai_wsseg.inference.engine import SlideMap, WSIInferer
from monai_wsseg.io import write_map_tiff
from monai_wsseg.metrics.tumor_maps import load_mask, mask_on_grid
from monai_wsseg.mil.evaluation import CSV_COLUMNS, TumorMapEvaluation
from monai_wsseg.synthetic.generator import make_cohort
from monai_wsseg.wsi.slide import open_slide


class MaskInferer(WSIInferer):
    """A WSIInferer whose map is computed from the expert mask instead of a network.

    ``mode``: ``"oracle"`` (the tumor fraction), ``"reversed"`` (1 − it) or ``"noisy"`` (a graded,
    imperfect score). Cells outside the planned tiles are NaN, as with a real network.
    """

    def __init__(self, masks: dict[str, Path | None], mode: str = "oracle") -> None:
        super().__init__(torch.nn.Identity(), mpp=0.5, stride=16, tile=256, num_workers=0, progress=False)
        self.masks, self.mode, self.calls, self.maps = masks, mode, 0, {}

    def __call__(self, slide, tissue=None) -> SlideMap:
        self.calls += 1
        if not hasattr(slide, "dimensions"):
            slide = open_slide(slide)
        plan = self.plan(slide, tissue)
        w, h = plan.map_size
        mask_path = self.masks[slide.path.name]
        frac = np.zeros((h, w), np.float32)
        if mask_path is not None:
            mask, d = load_mask(mask_path, slide.dimensions)
            frac = mask_on_grid(mask, d, plan.downsample, (h, w))
        if self.mode == "reversed":
            frac = 1 - frac
        elif self.mode == "noisy":
            rng = np.random.default_rng(zlib.crc32(slide.path.name.encode()))
            frac = np.clip(0.3 + 0.4 * frac + rng.uniform(-0.3, 0.3, frac.shape), 0, 1).astype(np.float32)
        probs = np.full((1, h, w), np.nan, np.float32)
        tc = plan.tile_cells
        for cx, cy in plan.cells.tolist():
            probs[0, cy : cy + tc, cx : cx + tc] = frac[cy : cy + tc, cx : cx + tc]
        smap = SlideMap(str(slide.path), probs, plan.downsample, plan.map_mpp)
        self.maps[slide.path.stem] = smap
        return smap


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[SlideRecord]:
    root = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(root, n_tumor=2, n_normal=1, size=(1024, 1024), seed=0,
                           splits=["val", "test", "test"])
    records = load_manifest(manifest)
    # two locations in the test split, for the breakdown
    return [dataclasses.replace(r, location="lung" if r.label else "breast") if r.split == "test" else r
            for r in records]


def masks_of(records: list[SlideRecord]) -> dict[str, Path | None]:
    return {r.slide.name: r.mask for r in records}


def evaluate(records, out, inferer, **kwargs) -> dict:
    return TumorMapEvaluation(inferer, records, out, backend="tifffile", progress=False, **kwargs).run()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_oracle_scores_perfectly_and_files_are_written(cohort, tmp_path):
    inferer = MaskInferer(masks_of(cohort))
    result = evaluate(cohort, tmp_path / "out", inferer)
    assert inferer.calls == 3 and not result["failed"] and not result["skipped"]
    # every level between "normal" (0) and "tumor" (1) separates them; ties go to the lowest
    assert result["threshold"] == pytest.approx(1 / 255)
    assert "best F1" in result["threshold_source"]
    assert result["validation"]["f1"] == 1.0 and result["validation"]["slides"] == 1
    pooled = result["pooled"]
    assert pooled["slides"] == 2
    assert pooled["auc_with_background"] == 1.0 and pooled["auc_without_background"] == 1.0
    assert (pooled["precision"], pooled["recall"], pooled["f1"], pooled["dice"]) == (1.0, 1.0, 1.0, 1.0)
    assert pooled["fp"] == 0 and pooled["fn"] == 0 and pooled["tp"] > 0 and pooled["tn"] > 0
    # background cells exist (glass inside inferred tiles), tissue cells are a subset
    assert pooled["cells"] > pooled["tissue_cells"] > pooled["tumor_tissue_cells"] > 0
    # no-data cells (tiles without tissue) are counted nowhere
    nodata = sum(int(np.isnan(m.probabilities).sum()) for k, m in inferer.maps.items() if "0000" not in k)
    assert nodata > 0 and pooled["cells"] == 2 * 64 * 64 - nodata

    rows = {Path(r["slide"]).name: r for r in result["slides"]}
    tumor, normal = rows["synth-0001-tumor.tif"], rows["synth-0002-normal.tif"]
    assert tumor["auc_with_background"] == 1.0 and tumor["f1"] == 1.0 and tumor["location"] == "lung"
    # a normal slide has one class: AUC and the ratios are undefined, yet its cells count in the pool
    assert math.isnan(normal["auc_with_background"]) and math.isnan(normal["auc_without_background"])
    assert normal["tp"] == normal["fp"] == 0 and math.isnan(normal["precision"]) and math.isnan(normal["f1"])
    assert pooled["tn"] == tumor["tn"] + normal["tn"]
    assert set(result["locations"]) == {"lung", "breast"}
    assert result["locations"]["lung"]["auc_without_background"] == 1.0
    assert math.isnan(result["locations"]["breast"]["auc_without_background"])

    out = tmp_path / "out"
    assert result["csv"] == out / "evaluation.csv" and result["markdown"] == out / "evaluation.md"
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.csv", "evaluation.md"]  # no temp files left
    table = read_csv(out / "evaluation.csv")
    assert tuple(table[0]) == CSV_COLUMNS
    assert [r["scope"] for r in table] == ["slide", "slide", "pooled", "location", "location", "validation"]
    pooled_row = table[2]
    assert float(pooled_row["auc_with_background"]) == 1.0 and int(pooled_row["tp"]) == pooled["tp"]
    assert math.isnan(float(table[1]["auc_without_background"]))  # the normal slide
    md = (out / "evaluation.md").read_text()
    assert f"Threshold **{1 / 255:.4f}**" in md and "best F1" in md
    assert md.index("## Pooled") < md.index("## By location") < md.index("## Per slide")
    assert "synth-0002-normal.tif" in md and "| breast |" in md


def test_reversed_oracle_scores_zero(cohort, tmp_path):
    result = evaluate(cohort, tmp_path, MaskInferer(masks_of(cohort), mode="reversed"))
    assert result["pooled"]["auc_with_background"] == 0.0
    assert result["pooled"]["auc_without_background"] == 0.0
    # the best F1 of reversed scores calls every cell tumor: the lowest level
    assert result["threshold"] == 0.0 and result["pooled"]["recall"] == 1.0


def test_stored_maps_are_reused_and_give_the_same_figures(cohort, tmp_path):
    live = MaskInferer(masks_of(cohort), mode="noisy")
    first = evaluate(cohort, tmp_path / "live", live)
    assert 0.5 < first["pooled"]["auc_without_background"] < 1.0
    maps = tmp_path / "maps"
    maps.mkdir()
    for stem, smap in live.maps.items():
        write_map_tiff(maps / f"{stem}.tif", smap)

    # the inferer is not called, but its plan restores the no-data cells the TIFF stores as 0
    reuse = MaskInferer(masks_of(cohort), mode="oracle")  # a different map would be visible
    second = evaluate(cohort, tmp_path / "reuse", reuse, maps_dir=maps)
    assert reuse.calls == 0
    assert second["threshold"] == first["threshold"]
    assert second["pooled"] == first["pooled"] and second["validation"] == first["validation"]

    # without an inferer every stored cell counts: more background cells, same tissue cells
    alone = evaluate(cohort, tmp_path / "alone", None, maps_dir=maps)
    assert alone["pooled"]["cells"] == 2 * 64 * 64 > first["pooled"]["cells"]
    assert alone["pooled"]["tissue_cells"] == first["pooled"]["tissue_cells"]

    # a slide without a stored map is inferred
    (maps / "synth-0002-normal.tif").unlink()
    partial = MaskInferer(masks_of(cohort), mode="noisy")
    third = evaluate(cohort, tmp_path / "partial", partial, maps_dir=maps)
    assert partial.calls == 1 and third["pooled"] == first["pooled"]


def test_a_corrupt_slide_is_listed_and_the_others_evaluated(cohort, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 this is not a slide")
    records = [*cohort, SlideRecord(broken, 0, "test", None, "broken-case", "lung")]
    masks = {**masks_of(cohort), broken.name: None}
    result = evaluate(records, tmp_path / "out", MaskInferer(masks))
    assert [Path(s).name for s, _ in result["failed"]] == ["broken.tif"]
    assert result["pooled"]["slides"] == 2 and result["pooled"]["auc_with_background"] == 1.0
    row = next(r for r in result["slides"] if r["slide"] == str(broken))
    assert row["error"] and "broken.tif" in row["error"]
    table = read_csv(tmp_path / "out" / "evaluation.csv")
    assert [r["scope"] for r in table].count("slide") == 3
    assert next(r for r in table if r["slide"] == str(broken))["error"]
    md = (tmp_path / "out" / "evaluation.md").read_text()
    assert "## Failed slides" in md and "broken.tif" in md


def test_threshold_falls_back_when_validation_has_one_class(cohort, tmp_path):
    # validation holds only the normal slide; a tumor slide without a mask is skipped
    records = [dataclasses.replace(r, split="val" if r.label == 0 else "test") for r in cohort]
    records.append(SlideRecord(cohort[0].slide.with_name("unmasked.tif"), 1, "test", None, "u"))
    with pytest.warns(UserWarning, match="threshold default 0.5"):
        result = evaluate(records, tmp_path / "out", MaskInferer(masks_of(cohort)))
    assert result["threshold"] == 0.5 and result["validation"]["slides"] == 1
    assert [reason for _, reason in result["skipped"]] == ["tumor slide without an expert mask"]
    assert result["pooled"]["f1"] == 1.0  # the oracle's scores are 0 or 1
    md = (tmp_path / "out" / "evaluation.md").read_text()
    assert "default 0.5" in md and "## Skipped slides" in md

    # a given threshold skips validation entirely
    inferer = MaskInferer(masks_of(cohort))
    fixed = evaluate(cohort, tmp_path / "fixed", inferer, threshold=0.25)
    assert fixed["threshold"] == 0.25 and fixed["threshold_source"] == "given" and inferer.calls == 2


def test_records_from_a_manifest_path(cohort, tmp_path):
    manifest = cohort[0].slide.parent.parent / "manifest.csv"
    ev = TumorMapEvaluation(None, manifest, tmp_path, progress=False)
    assert [r.slide for r in ev.records] == [r.slide for r in cohort]


class Darkness(torch.nn.Module):
    """Stride-16 network scoring darkness: the logit is minus the mean normalised intensity of each cell."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = torch.nn.AvgPool2d(16)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return -4 * self.pool(x.mean(dim=1, keepdim=True))


def test_real_inferer_and_its_stored_maps_agree(cohort, tmp_path):
    net = Darkness()
    inferer = WSIInferer(net, mpp=0.5, stride=16, tile=256, num_workers=0, progress=False)
    first = evaluate(cohort, tmp_path / "live", inferer)
    assert net.calls > 0 and not first["failed"]
    assert 0.0 <= first["pooled"]["auc_without_background"] <= 1.0
    maps = tmp_path / "maps"
    maps.mkdir()
    for r in cohort:
        with open_slide(r.slide, backend="tifffile") as slide:
            write_map_tiff(maps / f"{r.slide.stem}.tif", inferer(slide))
    calls = net.calls
    second = evaluate(cohort, tmp_path / "reuse", inferer, maps_dir=maps)
    assert net.calls == calls
    assert second["pooled"] == first["pooled"] and second["threshold"] == first["threshold"]
