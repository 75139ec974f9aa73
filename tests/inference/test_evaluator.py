"""CohortEvaluator, the inference bundles' zoo ``evaluator``: one Ignite iteration per slide, with run_cohort's
loop (CohortRun) (outputs per slide, skip on rerun, failures listed at the end) and handlers attached like any
MONAI evaluator."""

from __future__ import annotations

import pytest
from ignite.engine import Events

from monai_wsseg.inference.cohort import CohortError
from monai_wsseg.inference.evaluator import CohortEvaluator, patch_dataset, slide_dataset
from tests.inference.test_cohort import TinyFCN, inferer, make_slides


class CountSlides:
    """A handler as a config's ``handlers`` list would hold one."""

    def __init__(self) -> None:
        self.outputs: list[dict] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: self.outputs.append(e.state.output))


def test_every_slide_is_an_iteration_and_a_rerun_skips(tmp_path):
    make_slides(tmp_path / "slides", 2)
    dataset = slide_dataset(tmp_path / "slides")
    assert [d["image"] for d in dataset] == [str(tmp_path / "slides" / f"slide{i}.tif") for i in range(2)]
    counter, net = CountSlides(), TinyFCN()
    result = CohortEvaluator(inferer(net), dataset, tmp_path / "out", val_handlers=[counter], progress=False).run()
    assert len(result.done) == 2 and [o["status"] for o in counter.outputs] == ["done", "done"]
    for i in range(2):
        assert (tmp_path / "out" / f"slide{i}.tif").is_file() and (tmp_path / "out" / f"slide{i}.geojson").is_file()
    calls = net.calls
    again = CohortEvaluator(inferer(net), dataset, tmp_path / "out", progress=False).run()
    assert len(again.skipped) == 2 and not again.done and net.calls == calls


def test_a_bad_slide_is_listed_at_the_end_and_does_not_stop_the_others(tmp_path):
    slides = make_slides(tmp_path / "slides", 2)
    bad = tmp_path / "slides" / "broken.svs"
    bad.write_text("not a slide")
    items = [{"image": str(p)} for p in (slides[0], bad, slides[1])]
    with pytest.raises(CohortError, match=r"1 of 3 slides failed:\n  .*broken.svs: "):
        CohortEvaluator(inferer(TinyFCN()), items, tmp_path / "out", progress=False).run()
    assert (tmp_path / "out" / "slide1.tif").is_file()  # the slide after the bad one was still done
    result = CohortEvaluator(inferer(TinyFCN()), items, tmp_path / "out", tolerate_failures=True, progress=False).run()
    assert [p for p, _ in result.failed] == [str(bad)] and len(result.skipped) == 2


def test_slides_sharing_a_stem_are_refused_before_any_work(tmp_path):
    a, = make_slides(tmp_path / "a", 1)
    b, = make_slides(tmp_path / "b", 1)
    net = TinyFCN()
    with pytest.raises(ValueError, match=r"share the file stem\(s\) \['slide0'\]"):
        CohortEvaluator(inferer(net), [{"image": str(a)}, {"image": str(b)}], tmp_path / "out", progress=False).run()
    assert net.calls == 0


def test_handlers_see_the_dataset_items_of_this_ranks_shard(tmp_path, monkeypatch):
    slides = make_slides(tmp_path / "slides", 3)
    items = [{"image": str(p), "case": f"case{i}"} for i, p in enumerate(slides)]
    batches = []
    evaluator = CohortEvaluator(inferer(TinyFCN()), items, tmp_path / "out", progress=False)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: batches.append(e.state.batch))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = evaluator.run()
    assert batches == [items[1]] and result.done == [str(slides[1])] and evaluator.state.result is result
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == ["slide1.tif"]


def test_patch_dataset_lists_the_pngs_of_a_folder(tmp_path):
    for name in ("b.png", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [d["image"] for d in patch_dataset(tmp_path)] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
