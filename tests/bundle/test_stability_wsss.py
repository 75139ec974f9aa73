"""The WSSS stability protocol without training: protocol files and their errors, floors, and one seed's
flow on fabricated phase outputs (bundle runs replaced): figures, a phase that fails and is resumed, a last
epoch with the kept weights evaluated once."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from monai_wsseg.bundle import stability_wsss as wsss
from monai_wsseg.bundle.stability import check_floors, load_protocol
from monai_wsseg.bundle.stability_wsss import WSSSFloors, WSSSProtocol
from tests.conftest import PROJECT_ROOT

BUNDLE = PROJECT_ROOT / "bundles" / "wsss_tissue_segmentation"
CONFIGS = {"train_cls": ["train_cls.json", "cpu.json"], "pseudo_masks": ["pseudo_masks.json"],
           "train_seg": ["train_seg.json", "cpu_seg.json"], "evaluate": ["evaluate.json", "cpu_seg.json"]}


def test_the_shipped_cpu_protocol():
    p = load_protocol(PROJECT_ROOT / "configs" / "stability" / "wsss_cpu.json")
    assert isinstance(p, WSSSProtocol) and p.kind == "wsss" and p.bundle == BUNDLE and p.seeds == (0, 1, 2, 3, 4)
    assert {k: list(v) for k, v in p.configs.items()} == CONFIGS
    assert p.phase_overrides == {"pseudo_masks": {"width": 0.125}, "evaluate": {"width": 0.125}}
    assert p.dataset_dir == PROJECT_ROOT / "demo" / "hard" / "patches" / "home"
    assert p.second_lab_dir == PROJECT_ROOT / "demo" / "hard" / "patches" / "lab2"
    assert p.floors == WSSSFloors(min_test_miou=0.9, min_class_iou={"NEC": 0.85}, min_second_lab_miou=0.4, warmup=1)
    assert [r[:2] for r in p.floors.rules()] == [("min_test_miou", "test_miou"), ("min_second_lab_miou", "lab2_miou"),
                                                  ("min_class_iou.NEC", "iou_NEC")]
    assert all(f.is_file() for files in p.config_sets() for f in files)


def protocol_data(**changes) -> dict:
    return {"kind": "wsss", "bundle": str(BUNDLE), "dataset_dir": "d", "seeds": [0], "configs": CONFIGS, **changes}


@pytest.mark.parametrize("changes, message", [
    ({"kind": "seg"}, "kind must be one of ['mil', 'wsss']"),
    ({"configs": ["train_cls.json"]}, "configs must give the config files of each phase"),
    ({"configs": {k: v for k, v in CONFIGS.items() if k != "evaluate"}}, "configs must give"),
    ({"configs": {**CONFIGS, "evaluate": []}}, "configs.evaluate must be a non-empty list"),
    ({"phase_overrides": {"train": {"width": 1}}}, "phase_overrides must map phases"),
    ({"eval_configs": ["evaluate.json"]}, "unknown key(s) ['eval_configs']"),
    ({"floors": {"min_test_auc": 0.9}}, "floors: unknown key(s) ['min_test_auc']"),
    ({"floors": {"min_class_iou": 0.85}}, "floors.min_class_iou must be an object"),
    ({"floors": {"min_class_iou": {"NEC": "high"}}}, "floors.min_class_iou.NEC: must be a finite number"),
])
def test_a_bad_wsss_protocol_is_one_line_naming_the_file(tmp_path, changes, message):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(protocol_data(**changes)))
    with pytest.raises(ValueError) as info:
        load_protocol(f)
    assert str(info.value).startswith(str(f)) and message in str(info.value) and "\n" not in str(info.value)


def test_check_names_a_patch_set_without_its_folders_and_an_unknown_class(tmp_path):
    for folder in ("training", "val/img", "val/mask", "test/img", "test/mask"):
        (tmp_path / "home" / folder).mkdir(parents=True)
    (tmp_path / "lab2" / "test" / "img").mkdir(parents=True)
    p = WSSSProtocol(bundle=BUNDLE, dataset_dir=tmp_path / "home", seeds=(0,), configs=CONFIGS,
                     second_lab_dir=tmp_path / "lab2", floors=WSSSFloors(min_class_iou={"NECROSIS": 0.8}))
    with pytest.raises(FileNotFoundError, match=r"lab2: not a patch set \(second_lab_dir\): no test/mask folder"):
        p.check()
    (tmp_path / "lab2" / "test" / "mask").mkdir()
    with pytest.raises(ValueError, match=r"unknown class\(es\) \['NECROSIS'\].*'TE', 'NEC', 'LYM', 'TAS'"):
        p.check()
    p = dataclasses.replace(p, floors=WSSSFloors(), phase_overrides={"evaluate": {"widht": 0.125}})
    with pytest.raises(ValueError, match=r"phase_overrides.evaluate: \['widht'\]: the phase's configs do not"):
        p.check()
    p = dataclasses.replace(p, phase_overrides={"train_seg": {"output_dir": "x"}})
    with pytest.raises(ValueError, match=r"phase_overrides.train_seg: \['output_dir'\] are set by the protocol"):
        p.check()


def test_floors_judge_test_miou_and_each_class():
    floors = WSSSFloors(min_test_miou=0.9, min_class_iou={"NEC": 0.85, "TE": 0.5}, min_second_lab_miou=0.8)
    r = wsss.SeedResult(0, status="done", figures={"test_miou": 0.92, "iou_NEC": 0.8, "iou_TE": math.nan,
                                                   "lab2_miou": 0.85})
    assert check_floors(r, floors).violations == ["iou_NEC 0.8000 < 0.85"] and r.unchecked == ["iou_TE"]


# -- one seed, bundle runs replaced -------------------------------------------------------------------------
def weights(value: float) -> dict:
    return {"w": torch.full((2, 2), value)}


@pytest.fixture
def fabricated(tmp_path, monkeypatch):
    """A protocol whose phases write the bundle's files, and whose evaluation scores each checkpoint."""
    for root in ("home", "lab2"):
        (tmp_path / root).mkdir()
    protocol = WSSSProtocol(bundle=BUNDLE, dataset_dir=tmp_path / "home", seeds=(0,), configs=CONFIGS,
                            second_lab_dir=tmp_path / "lab2", floors=WSSSFloors(warmup=1, min_test_miou=0.9),
                            phase_overrides={"evaluate": {"width": 0.125}})
    calls: list[tuple[str, dict]] = []
    state = {"fail": None, "last": 3.0}

    def run_phase(p, phase, overrides, **own):
        calls.append((phase, own))
        if state["fail"] == phase:
            state["fail"] = None
            raise RuntimeError(f"{phase} broke")
        out = Path(own["output_dir"])
        models = out / "models"
        if phase == "train_cls":
            models.mkdir(parents=True)
            torch.save(weights(1.0), models / "classifier.pt")
            (out / "validation_cls.csv").write_text("epoch,val_cls_auc\n1,0.7\n2,0.8\n")
        elif phase == "train_seg":
            assert (out / "models" / "classifier.pt").is_file()
            torch.save(weights(2.0), models / "model.pt")
            torch.save(weights(state["last"]), models / "model_last.pt")
            (out / "validation_seg.csv").write_text("epoch,val_miou\n1,0.5\n2,0.9\n3,0.85\n")
        elif phase == "evaluate":
            lab2 = Path(own["dataset_dir"]).name == "lab2"
            miou = {"model.pt": 0.92, "model_last.pt": 0.88}[Path(own["segmenter_path"]).name] - 0.1 * lab2
            table = Path(own["evaluation_dir"]) / "evaluation.csv"
            table.parent.mkdir(parents=True, exist_ok=True)
            table.write_text("row,iou_TE,iou_NEC,iou_LYM,iou_TAS,miou,fwiou,acc\n"
                             f"cam:bn7,0.6,0.5,0.7,0.6,0.6,0.6,0.7\n"
                             f"segmentation,0.95,{miou - 0.05},0.9,nan,{miou},0.9,0.95\n"
                             f"segmentation+gate,0.96,0.9,0.9,nan,{miou + 0.01},0.91,0.96\n")

    monkeypatch.setattr(wsss, "_run_phase", run_phase)
    monkeypatch.setattr(type(protocol), "class_names", ("TE", "NEC", "LYM", "TAS"))  # no bundle config read
    return protocol, calls, state, tmp_path / "out"


def test_one_seed_runs_the_phases_and_takes_the_figures(fabricated):
    protocol, calls, _, out = fabricated
    r = wsss.run_seed(protocol, 0, out, {"num_epochs": 1})
    assert r.status == "done", r.error
    assert [c[0] for c in calls] == ["train_cls", "pseudo_masks", "train_seg", "evaluate", "evaluate", "evaluate"]
    assert calls[0][1]["seed"] == 0 and calls[3][1]["split"] == "test"
    assert [Path(c[1]["evaluation_dir"]).name for c in calls[3:]] == ["eval_kept", "eval_last", "lab2_kept"]
    f = r.figures
    assert (f["test_miou"], f["iou_TE"], f["cam_miou"]) == (0.92, 0.95, 0.6) and f["gate_miou"] == pytest.approx(0.93)
    assert f["iou_NEC"] == pytest.approx(0.87) and math.isnan(f["iou_TAS"])
    assert f["last_test_miou"] == 0.88 and f["lab2_miou"] == pytest.approx(0.82)
    assert (f["best_epoch"], f["min_val_after_warmup"], f["final_val"], f["final_cls_auc"]) == (2, 0.85, 0.85, 0.8)
    assert r.curve == {"epoch": [1.0, 2.0, 3.0], "val_miou": [0.5, 0.9, 0.85],
                       "val_cls_auc": [0.7, 0.8, pytest.approx(math.nan, nan_ok=True)]}
    assert set(f) == set(protocol.figure_spec().figures)
    saved = json.loads((out / "seed_0" / "result.json").read_text())
    assert saved["settings"]["overrides"] == {"num_epochs": 1} and saved["settings"]["kind"] == "wsss"
    calls.clear()
    assert wsss.run_seed(protocol, 0, out, {"num_epochs": 1}).status == "resumed" and calls == []


def test_a_failed_phase_is_resumed_without_the_phases_before_it(fabricated):
    protocol, calls, state, out = fabricated
    state["fail"] = "train_seg"
    r = wsss.run_seed(protocol, 0, out)
    assert r.status == "failed" and r.error == "RuntimeError: train_seg broke"
    assert json.loads((out / "seed_0" / "phases.json").read_text())["done"] == ["train_cls", "pseudo_masks"]
    calls.clear()
    state["last"] = 2.0  # the best epoch is the last: its weights are evaluated once
    r = wsss.run_seed(protocol, 0, out)
    assert r.status == "done" and [c[0] for c in calls] == ["train_seg", "evaluate", "evaluate"]
    assert r.figures["last_test_miou"] == r.figures["test_miou"] == 0.92
    assert any("last epoch is the kept one" in n for n in r.notes)
    record = json.loads((out / "seed_0" / "phases.json").read_text())
    assert set(record["seconds"]) == {"train_cls", "pseudo_masks", "train_seg"}


def test_a_classifier_trained_again_takes_its_pseudo_masks_and_evaluations_with_it(fabricated):
    protocol, calls, _, out = fabricated
    assert wsss.run_seed(protocol, 0, out).status == "done"
    seed_dir = out / "seed_0"
    (seed_dir / "result.json").unlink()
    (seed_dir / "phases.json").write_text(json.dumps({"done": ["pseudo_masks", "train_seg"], "seconds": {}}))
    stale = seed_dir / "train" / "pseudo" / "stale.png"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("x")
    calls.clear()
    assert wsss.run_seed(protocol, 0, out).status == "done"
    assert [c[0] for c in calls][:3] == ["train_cls", "pseudo_masks", "train_seg"] and not stale.exists()
    assert [c[0] for c in calls][3:] == ["evaluate"] * 3  # evaluations of the old training were dropped
