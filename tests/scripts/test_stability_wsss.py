"""``scripts/stability.py`` on the WSSS bundle end to end: one seed of the four phases (1 epoch) on a tiny hard
patch set and its second lab, read back without training on a rerun and judged again with an impossible
floor; and its bad-input errors."""

from __future__ import annotations

import csv
import json

import pytest

from monai_wsseg.bundle import stability_wsss
from monai_wsseg.synthetic import make_hard_patch_sets
from tests.conftest import PROJECT_ROOT, load_script

script = load_script("stability")

# The WSSS bundle tests' tiny settings: 1 epoch, batch 4, no worker processes.
TINY = ["--num_epochs", "1", "--batch_size", "4", "--num_workers", "0"]
SHIPPED = json.loads((PROJECT_ROOT / "configs" / "stability" / "wsss_cpu.json").read_text())


def write_protocol(path, sets, floors) -> str:
    """The shipped CPU protocol (its phases, configs and overrides) on the tiny patch sets, one seed."""
    path.write_text(json.dumps({**SHIPPED, "root": str(PROJECT_ROOT), "seeds": [0], "dataset_dir": str(sets["home"]),
                                "second_lab_dir": str(sets["lab2"]), "floors": floors}))
    return str(path)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return make_hard_patch_sets(tmp_path_factory.mktemp("wsss_patches"), n_train=8, n_val=4, n_test=4, size=64)


@pytest.fixture(scope="module")
def study(sets, tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("wsss_stability")
    protocol = write_protocol(out.parent / f"{out.name}_protocol.json", sets, {"min_test_miou": 0.0, "warmup": 0})
    return out, script.main(["--protocol", protocol, "--output_dir", str(out), "--", *TINY])


def test_one_seed_runs_the_four_phases_and_is_tabulated(study):
    out, code = study
    assert code == 0
    with open(out / "stability.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["0", "median", "min", "max"]
    r = rows[0]
    assert r["status"] == "done" and r["verdict"] == "pass"
    for key in ("test_miou", "gate_miou", "cam_miou", "last_test_miou", "lab2_miou", "final_val", "final_cls_auc"):
        assert 0 <= float(r[key]) <= 1, key
    seed_dir = out / "seed_0"
    for folder in ("eval_kept", "lab2_kept"):
        assert (seed_dir / folder / "evaluation.csv").is_file()
    train = seed_dir / "train"
    assert (train / "models" / "model_last.pt").is_file() and (train / "pseudo" / "bn7").is_dir()
    assert (train / "validation_cls.csv").read_text().startswith("epoch,val_cls_auc\n1,")
    result = json.loads((seed_dir / "result.json").read_text())
    assert result["curve"]["epoch"] == [1.0] and set(result["curve"]) == {"epoch", "val_miou", "val_cls_auc"}
    assert json.loads((train / "run.json").read_text())["settings"]["seed"] == 0
    md = (out / "stability.md").read_text()
    assert "| NEC IoU |" in md and "| lab 2 MIoU |" in md and "| test MIoU ≥ | 0 |" in md
    assert "[1/1] seed 0: done" in (out / "stability.log").read_text()


def test_a_rerun_reads_the_seed_back_and_an_impossible_floor_fails_it(study, sets, monkeypatch):
    out, _ = study
    stamp = (out / "seed_0" / "result.json").stat().st_mtime_ns
    monkeypatch.setattr(stability_wsss, "_run_phase", lambda *a, **k: pytest.fail("a phase ran again"))
    harsh = write_protocol(out.parent / f"{out.name}_harsh.json", sets, {"min_class_iou": {"NEC": 1.01}})
    assert script.main(["--protocol", harsh, "--output_dir", str(out), "--", *TINY]) == 1
    assert (out / "seed_0" / "result.json").stat().st_mtime_ns == stamp
    with open(out / "stability.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["status"] == "resumed"
    assert row["verdict"].startswith("below floor: iou_NEC") and "< 1.01" in row["verdict"]
    assert "seed 0 below a floor: iou_NEC" in (out / "stability.log").read_text()


@pytest.mark.parametrize("case", ["unknown_class", "owned_override", "no_lab2_masks", "typo_override"])
def test_bad_input_is_one_line_and_exit_2(case, sets, tmp_path, capsys):
    floors = {"min_class_iou": {"NECROSIS": 0.85}} if case == "unknown_class" else {}
    protocol = write_protocol(tmp_path / "p.json", sets, floors)
    args = ["--protocol", protocol, "--output_dir", str(tmp_path / "out")]
    if case == "owned_override":
        args += ["--", "--split", "val"]
    elif case == "typo_override":
        args += ["--", "--num_epoch", "1"]
    elif case == "no_lab2_masks":
        args += ["--second_lab_dir", str(sets["lab2"] / "test")]
    expected = {"unknown_class": "unknown class(es) ['NECROSIS']",
                "owned_override": "['split'] are set by the protocol",
                "no_lab2_masks": "not a patch set (second_lab_dir): no test/img, test/mask folder",
                "typo_override": "['num_epoch']: none of the protocol's configs"}[case]
    assert script.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists()
