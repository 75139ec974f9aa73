"""Output folders: a read-only or full folder stops a run before any work; a crash while saving a
checkpoint leaves no partial file under its final name."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
import torch
from torch import nn

from monai_wsseg.engines.checkpoints import AtomicCheckpointSaver
from monai_wsseg.engines.run_record import record_run
from monai_wsseg.inference.cohort import run_cohort
from monai_wsseg.utils.output_dir import check_output_dir
from tests.faults.conftest import as_unprivileged, assert_no_partial, expect_clear, expect_handled
from tests.inference.test_cohort import TinyFCN, inferer, make_slides


def test_a_read_only_output_folder_is_refused_before_any_work(public_tmp):
    locked = public_tmp / "readonly"
    locked.mkdir()
    locked.chmod(0o555)
    for case, call in [("output: read-only folder (cohort check)", lambda: check_output_dir(locked)),
                       ("output: read-only folder (training record)", lambda: record_run(locked / "run", "cpu")),
                       ("output: read-only parent (new folder)", lambda: check_output_dir(locked / "new" / "maps"))]:
        found = as_unprivileged(call)
        assert found is not None, f"{case}: an unprivileged user wrote into a mode-555 folder"
        kind, message, ours = found
        clear = (ours and kind == "OutputDirError" and str(locked) in message.splitlines()[0]
                 and "not writable" in message)
        expect_handled(case, clear, f"{kind}: {message}")


def test_a_full_output_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    slides = make_slides(tmp_path / "slides", 1)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))  # 1 MiB free
    net = TinyFCN()
    expect_clear("output: full disk (cohort)", lambda: run_cohort(inferer(net), slides, tmp_path / "maps"),
                 names=str(tmp_path / "maps"), match="nearly full (1.0 MiB free")
    assert net.calls == 0  # refused before the first tile
    expect_clear("output: full disk (training)", lambda: record_run(tmp_path / "run", "cpu"),
                 names=str(tmp_path / "run"), match="nearly full")
    assert not (tmp_path / "run" / "run.json").exists()


def _saving_engine(folder):
    from ignite.engine import Engine

    net = nn.Linear(2, 1)
    engine = Engine(lambda e, b: net.weight.data.add_(1.0))
    AtomicCheckpointSaver(save_dir=str(folder), save_dict={"model": net, "trainer": engine}, save_interval=1,
                          n_saved=1, file_prefix="").attach(engine)
    return engine


def test_a_crash_while_saving_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    normal = _saving_engine(tmp_path / "normal")
    normal.run([0], max_epochs=3)
    assert [p.name for p in (tmp_path / "normal").iterdir()] == ["checkpoint_epoch=3.pt"]  # older ones removed

    engine = _saving_engine(tmp_path / "killed")
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):  # writes half a file, then the process "dies"
        if engine.state.epoch == 2:
            f.write(b"PK\x03\x04 half a zip archive")
            raise KeyboardInterrupt("killed while saving")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=3)
    # the epoch-1 checkpoint survives the crash that interrupted epoch 2's save (Ignite alone deletes it first)
    assert [p.name for p in (tmp_path / "killed").iterdir()] == ["checkpoint_epoch=1.pt"]
    assert_no_partial("output: crash while saving a checkpoint", tmp_path / "killed")
