"""Paper B's Table III ablation (monai_wsseg.wsss.ablation, .ablation_tables): the run definition, rows → runs,
the resume rules on fake phases, and the tables on fake results. The end-to-end ablation is in
tests/scripts/test_wsss_ablation.py."""

from __future__ import annotations

import json
import math

import pytest

from monai_wsseg.wsss import ablation, ablation_tables
from tests.conftest import PROJECT_ROOT

DEFINITION = PROJECT_ROOT / "configs" / "ablation" / "wsss_table3.json"


@pytest.fixture(scope="module")
def definition() -> ablation.AblationDefinition:
    return ablation.load_ablation(DEFINITION)


# -- the definition, rows and runs ----------------------------------------------------------------------------
def test_rows_name_the_runs_they_need(definition):
    assert [r.number for r in definition.rows] == list(range(1, 9))
    assert ablation.runs_for(definition, [1, 3, 7, 8]) == ["p1_none", "p1_pda", "p2_multi"]
    assert ablation.runs_for(definition, [4]) == ["p1_pda", "p2_b4_3"]  # phase 2 needs p1_pda's classifier, masks
    assert ablation.runs_for(definition, [2]) == ["p1_constant"]
    assert ablation.runs_for(definition, range(1, 9)) == ["p1_none", "p1_constant", "p1_pda", "p2_b4_3", "p2_b5_2",
                                                          "p2_bn7", "p2_multi"]
    assert ablation.parse_rows(" 8,1, 3 ", definition) == [1, 3, 8]
    for bad in ("0", "9", "1,1", "a", "", "1.5"):
        with pytest.raises(ValueError, match="--rows"):
            ablation.parse_rows(bad, definition)


def test_the_definition_holds_the_papers_table(definition):
    runs = definition.runs
    assert [(r.phase, r.pda_mode) for r in runs.values() if r.phase == 1] == [(1, "none"), (1, "constant"),
                                                                                (1, "pda")]
    assert [runs[n].layers for n in ("p2_b4_3", "p2_b5_2", "p2_bn7", "p2_multi")] == [("b4_3",), ("b5_2",),
                                                                                       ("bn7",), ()]
    assert definition.upstream == "p1_pda"
    assert [(r.run, r.source, r.gate) for r in definition.rows[6:]] == [("p2_multi", "segmentation", False),
                                                                       ("p2_multi", "segmentation+gate", True)]
    assert [f.name for f in definition.configs["cpu"]["train_seg"]] == ["train_seg.json", "cpu_seg.json"]
    assert [f.name for f in definition.configs["gpu"]["evaluate"]] == ["evaluate.json"]
    assert definition.classifier_width_from["cpu"].name == "cpu.json" and "gpu" not in definition.classifier_width_from


def test_the_cpu_profile_gives_the_classifier_width_to_the_phases_that_load_it(definition, tmp_path):
    width = json.loads(definition.classifier_width_from["cpu"].read_text())["width"]
    cpu = ablation.Setup(definition, tmp_path, "cpu", {"num_epochs": 1, "nosuch#x": 2})
    assert cpu.pairs("evaluate", output_dir=tmp_path)["width"] == width
    assert cpu.pairs("pseudo")["width"] == width
    assert "width" not in cpu.pairs("train_seg")
    assert cpu.pairs("evaluate", output_dir=tmp_path)["output_dir"] == str(tmp_path)  # paths passed as strings
    assert "nosuch#x" not in cpu.pairs("train_cls")  # a nested id goes only where its parent is
    assert "width" not in ablation.Setup(definition, tmp_path, "gpu", {}).pairs("evaluate")


def _write(tmp_path, **changes):
    data = json.loads(DEFINITION.read_text())
    data["root"] = str(PROJECT_ROOT)
    data.update(changes)
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(data))
    return path


def _rows(**change):
    rows = json.loads(DEFINITION.read_text())["rows"]
    rows[3] = {**rows[3], **change}
    return rows


@pytest.mark.parametrize("changes, problem", [
    ({"rows": _rows(run="p2_nosuch")}, "rows[3].run: 'p2_nosuch' is not one of the runs"),
    ({"rows": _rows(number=5)}, "rows[3].number: rows are numbered 1, 2, ... in order; expected 4"),
    ({"rows": _rows(pda="full")}, "rows[3].pda: must be one of"),
    ({"rows": _rows(colour="red")}, "rows[3]: unknown key(s) ['colour']"),
    ({"upstream": "p2_multi"}, "upstream: must name a phase-1 run"),
    ({"runs": [{"name": "p1_none", "phase": 3}]}, "runs[0].phase: must be 1 or 2"),
    ({"runs": [{"name": "p1_none", "phase": 1, "layers": ["bn7"]}]}, "runs[0].layers: "),
    ({"runs": [{"name": "p1", "phase": 1}, {"name": "p1", "phase": 1}]}, "runs[1].name: 'p1' is given twice"),
    ({"configs": {"cpu": {}, "gpu": {}}}, "configs.cpu: missing key(s)"),
    ({"classifier_width_from": {"cpu": "cpu_seg.json"}}, "classifier_width_from.cpu: "),
    ({"quick": {"patches": {"n_training": 8}}}, "quick.patches: unknown key(s) ['n_training']"),
    ({"quick": {"overrides": {"pda_mode": "none"}}}, "quick.overrides: ['pda_mode'] are set per run"),
])
def test_a_bad_definition_is_refused_in_one_line_naming_file_and_key(tmp_path, changes, problem):
    path = _write(tmp_path, **changes)
    with pytest.raises(ValueError) as exc:
        ablation.load_ablation(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_overrides_the_runs_set_or_no_phase_defines_are_refused(definition, tmp_path):
    setup = ablation.Setup(definition, tmp_path, "cpu", {})
    for extra, problem in (({"pda_mode": "none"}, "set by the script per run"),
                           ({"run_id": "x"}, "set by the script per run"),
                           ({"num_epoch": 1}, "no phase's config defines them"),
                           ({"train#nosuch#x": 1}, "no phase's config defines them")):
        with pytest.raises(ValueError, match=problem):
            ablation.check_ablation_overrides(setup, extra)
    ablation.check_ablation_overrides(setup, {"num_epochs": 1, "batch_size": 2})


# -- resume rules, on fake phases -------------------------------------------------------------------------------
def test_resume_rules_on_fake_phases(tmp_path, monkeypatch, definition):
    calls: list[tuple[str, str]] = []
    miou = iter(range(1, 100))

    def fake_train(run, setup):
        calls.append(("train", run.name))
        ckpt = setup.run_dir(run.name) / "models" / ("classifier.pt" if run.phase == 1 else "model.pt")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_text(str(len(calls)))  # a new size and mtime at each training

    def fake_pseudo(run, setup):
        calls.append(("pseudo", run.name))

    def fake_evaluate(run, setup):
        calls.append(("evaluate", run.name))
        out = setup.run_dir(run.name) / "evaluation"
        out.mkdir(parents=True, exist_ok=True)
        value = next(miou) / 100
        (out / "evaluation.csv").write_text("row,iou_A,miou,fwiou,acc\n"
                                            f"cam:bn7,{value},{value},{value},{value}\n"
                                            f"segmentation,{value},{value},{value},{value}\n")

    monkeypatch.setattr(ablation, "train", fake_train)
    monkeypatch.setattr(ablation, "pseudo_masks", fake_pseudo)
    monkeypatch.setattr(ablation, "evaluate", fake_evaluate)
    setup = ablation.Setup(definition, tmp_path, "cpu", {})
    p1, p2 = definition.runs["p1_pda"], definition.runs["p2_bn7"]

    first = ablation.run_one(p1, setup, with_pseudo=False, failed={})
    assert first.status == "done" and first.rows["cam:bn7"]["miou"] == 0.01
    assert set(first.seconds) == {"train", "evaluate"}
    # its evaluation exists, but phase 2 now wants the pseudo masks: only they are made
    again = ablation.run_one(p1, setup, with_pseudo=True, failed={})
    assert again.status == "done" and again.rows["cam:bn7"]["miou"] == 0.01
    assert calls == [("train", "p1_pda"), ("evaluate", "p1_pda"), ("pseudo", "p1_pda")]
    assert ablation.run_one(p1, setup, with_pseudo=True, failed={}).status == "resumed"
    assert ablation.run_one(p2, setup, with_pseudo=False, failed={}).status == "done"
    calls.clear()
    assert ablation.run_one(p2, setup, with_pseudo=False, failed={}).status == "resumed"
    assert calls == []

    # p1_pda trained again (its checkpoint changed): the phase-2 run made from the old one is redone
    fake_train(p1, setup)
    calls.clear()
    redone = ablation.run_one(p2, setup, with_pseudo=False, failed={})
    assert redone.status == "done" and calls == [("train", "p2_bn7"), ("evaluate", "p2_bn7")]
    assert redone.seconds["train"] > 0

    # a phase-2 run does not start when p1_pda failed
    calls.clear()
    blocked = ablation.run_one(definition.runs["p2_multi"], setup, with_pseudo=False, failed={"p1_pda": "boom"})
    assert blocked.status == "failed" and "p1_pda" in blocked.error and calls == []


# -- the tables, on fake results --------------------------------------------------------------------------------
def test_tables_on_fake_results(tmp_path, definition):
    results = {
        "p1_none": ablation_tables.RunResult("p1_none", "done", seconds={"train": 2.0, "evaluate": 1.0},
                                             rows={"cam:bn7": {"iou_TE": 0.5, "iou_NEC": math.nan, "fwiou": 0.4,
                                                               "miou": 0.45, "acc": 0.6}}),
        "p1_pda": ablation_tables.RunResult("p1_pda", "failed", "RuntimeError: boom"),
        "p2_multi": ablation_tables.RunResult("p2_multi", "resumed", rows={"segmentation": {"iou_TE": 0.7}}),
    }
    csv_path, md_path = ablation_tables.write_tables(definition, [1, 3, 7, 8], results, tmp_path, "a note")
    table = ablation_tables.read_table(csv_path)
    assert [(r["row"], r["run"], r["status"]) for r in table] == [
        (1, "p1_none", "done"), (3, "p1_pda", "failed"), (7, "p2_multi", "resumed"), (8, "p2_multi", "resumed")]
    assert [c for c in table[0] if c.startswith("iou_")] == ["iou_TE", "iou_NEC"]
    assert table[0]["miou"] == 0.45 and table[0]["run_seconds"] == 3.0 and math.isnan(table[0]["iou_NEC"])
    assert math.isnan(table[1]["miou"]) and table[1]["error"] == "RuntimeError: boom"
    assert table[2]["iou_TE"] == 0.7 and table[2]["error"] == ""
    # row 8's source row is missing from p2_multi's evaluation: named, figures blank
    assert "'segmentation+gate' is not a row of p2_multi" in table[3]["error"] and math.isnan(table[3]["iou_TE"])
    assert (table[3]["class_gate"], table[3]["pseudo_supervision"], table[0]["pda"]) == (1, "multi", "none")
    md = md_path.read_text(encoding="utf-8")
    assert "| (1) | Phase 1 | - | - | - | 0.5000 |  | 0.4000 | 0.4500 | 0.6000 |" in md
    assert "| (8) | Phase 2 | ✓ | Multi-Layer | ✓ |" in md and "a note" in md
    assert "- p1_none: 3.0 s (train 2.0 s, evaluate 1.0 s), done" in md
    assert "Failed: p1_pda (RuntimeError: boom) — see ablation.log" in md
