"""MIL training glue: bag iteration, skipped slides, NaN stop, slide selection, checkpoints, validation AUC."""

from __future__ import annotations

import logging
import re
from typing import ClassVar

import numpy as np
import pytest
import torch
from ignite.engine import Events
from torch import nn

from monai_wsseg.datasets.manifest import SlideRecord
from monai_wsseg.engines.checkpoints import latest_checkpoint
from monai_wsseg.engines.tracking import step_loss
from monai_wsseg.mil.loss import TopKBottomKMILLoss
from monai_wsseg.mil.trainer import MILTrainer, instance_logits, mil_slides
from monai_wsseg.mil.validation import TumorAUC
from monai_wsseg.networks.checkpoint import load_weights


class MeanColour(nn.Module):
    """Dense logits (B, 1, P/4, P/4) = w · (mean red of each 4×4 cell) + b: tiny and learnable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def bag_batch(labels, n=6, p=8, seed=0, errors=()):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(len(labels), n, 3, p, p, generator=g)
    for b, lab in enumerate(labels):
        if lab:
            images[b, : n // 2, 0] += 1.0  # half of a tumor bag is "red"
    return {"image": images, "label": torch.tensor(labels, dtype=torch.float32),
            "slide": [f"s{b}.tif" for b in range(len(labels))], "errors": list(errors)}


def make_trainer(loader, network=None, epochs=1, alpha=0.2, beta=0.2, **kwargs):
    network = network or MeanColour()
    return MILTrainer(device="cpu", max_epochs=epochs, train_data_loader=loader, network=network,
                      optimizer=torch.optim.Adam(network.parameters(), 1e-2),
                      loss_function=TopKBottomKMILLoss(alpha, beta), **kwargs)


def test_instance_logits_shapes_and_mean():
    dense = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(6, 1, 2, 2)
    patch = instance_logits(dense, bags=2)
    assert patch.shape == (2, 3)
    assert torch.allclose(patch, dense.reshape(6, 4).mean(1).reshape(2, 3))
    assert instance_logits(dense, bags=2, instance="cell").shape == (2, 3, 2, 2)
    assert instance_logits(torch.zeros(6, 1), bags=3).shape == (3, 2)
    with pytest.raises(ValueError, match="one tumor logit channel"):
        instance_logits(torch.zeros(6, 2, 2, 2), bags=2)
    with pytest.raises(ValueError, match="do not split into 4 bags"):
        instance_logits(dense, bags=4)


def test_training_lowers_the_loss_and_reports_it():
    torch.manual_seed(0)
    batches = [bag_batch([1, 0], seed=s) for s in range(4)]
    trainer = make_trainer(batches, epochs=15, alpha=0.5, beta=0.0)  # half of a tumor bag is tumor
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(step_loss(e.state.output)))
    trainer.run()
    assert len(losses) == 60
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8])
    fresh = bag_batch([1], n=20, seed=99)  # the weak labels taught it which patches are "tumor"
    with torch.no_grad():
        scores = instance_logits(trainer.network(fresh["image"][0]), bags=1)[0]
    assert scores[:10].min() > scores[10:].max()
    out = trainer.state.output
    assert out["pred"].shape == (2, 6) and out["slide"] == ["s0.tif", "s1.tif"]


def test_unreadable_slides_are_skipped_logged_and_listed(caplog):
    batches = [bag_batch([1], errors=[("bad.tif", "truncated file")]),
               {"errors": [("gone.tif", "not found")], "slide": []},  # every slide of the step unreadable
               bag_batch([0])]
    trainer = make_trainer(batches, epochs=2)
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(step_loss(e.state.output)))
    with caplog.at_level(logging.WARNING, logger="monai_wsseg.mil.trainer"):
        trainer.run()
    assert trainer.state.skipped_slides == {"bad.tif": "truncated file", "gone.tif": "not found"}
    assert outputs[1] is None and outputs[0] is not None
    epoch_lines = [r.getMessage() for r in caplog.records if "slide(s) skipped" in r.getMessage()]
    assert len(epoch_lines) == 2 and "bad.tif: truncated file" in epoch_lines[0] and "gone.tif" in epoch_lines[0]


def test_nan_loss_stops_before_the_update_and_names_the_slide():
    network = MeanColour()
    batch = bag_batch([1, 0])
    batch["image"][1, 0, 0, 0, 0] = float("nan")
    trainer = make_trainer([bag_batch([1, 0]), batch], network=network)
    seen = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.update(
        {k: v.clone() for k, v in network.state_dict().items()}))
    with pytest.raises(FloatingPointError, match=r"iteration 2 .*s0\.tif, s1\.tif"):
        trainer.run()
    for k, v in network.state_dict().items():  # weights are those after step 1: the NaN step changed nothing
        assert torch.equal(v, seen[k])


def test_each_epoch_draws_new_bags():
    class Loader(list):
        class dataset:  # stands for a SlideBagDataset
            epochs: ClassVar[list[int]] = []

            @classmethod
            def set_epoch(cls, e):
                cls.epochs.append(e)

    trainer = make_trainer(Loader([bag_batch([1, 0])]), epochs=3)
    trainer.run()
    assert Loader.dataset.epochs == [1, 2, 3]


def records(labels, splits):
    return [SlideRecord(f"/d/s{i}.tif", lab, sp, None, f"c{i}", "x")
            for i, (lab, sp) in enumerate(zip(labels, splits, strict=True))]


def test_mil_slides_checks_the_split():
    recs = records([1, 0, 1, 0], ["train", "train", "val", "test"])
    assert [str(r.slide) for r in mil_slides(recs, "train")] == ["/d/s0.tif", "/d/s1.tif"]
    assert len(mil_slides(recs, "val", require_both_labels=False)) == 1
    with pytest.raises(ValueError, match="none normal"):
        mil_slides(recs, "val")
    with pytest.raises(ValueError, match="none tumor"):
        mil_slides(records([0, 0], ["train", "train"]), "train", what="cohort.csv")
    with pytest.raises(ValueError, match=r"split 'valid': no slides \(splits present: test, train, val\)"):
        mil_slides(recs, "valid")


def test_latest_checkpoint_and_load_weights(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    net = MeanColour()
    torch.save({"model": net.state_dict(), "optimizer": {}}, tmp_path / "checkpoint_epoch=1.pt")
    ddp_style = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save(ddp_style, tmp_path / "checkpoint_epoch=2.pt")
    assert latest_checkpoint(tmp_path).endswith("checkpoint_epoch=2.pt")
    for name in ("checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"):
        other = load_weights(MeanColour(), tmp_path / name)
        pairs = zip(other.state_dict().values(), net.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    with pytest.raises(ValueError, match=r"checkpoint_epoch=1\.pt: weights do not fit Conv2d"):
        load_weights(nn.Conv2d(3, 2, 1), tmp_path / "checkpoint_epoch=1.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt: cannot be read as a checkpoint"):
        load_weights(net, tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match=re.escape("nothing.pt")):
        load_weights(net, tmp_path / "nothing.pt")


def test_tumor_auc_pixels_first_then_slide_maxima():
    metric = TumorAUC()
    metric.reset()
    prob = np.array([[0.9, 0.2], [0.6, np.nan]])
    tissue = np.array([[True, True], [True, True]])
    metric.update({"prob": prob, "tissue": tissue, "truth": np.array([[1, 0], [0, 0]], bool), "label": 1})
    metric.update({"prob": np.array([[0.7, 0.1]]), "tissue": np.array([[True, False]]),
                   "truth": np.zeros((1, 2), bool), "label": 0})
    metric.update({"slide": "x", "error": "unreadable"})  # ignored
    # positives {0.9}; negatives {0.2, 0.6, 0.7} (0.1 is not tissue, NaN has no prediction): AUC 1
    assert metric.compute() == pytest.approx(1.0)
    metric.reset()  # no pixel truth: slide maxima 0.8 (tumor) vs 0.3, 0.9 (normal) -> AUC 0.5
    for peak, label in ((0.8, 1), (0.3, 0), (0.9, 0)):
        metric.update({"prob": np.array([[peak, 0.0]]), "tissue": np.ones((1, 2), bool), "truth": None,
                       "label": label})
    assert metric.compute() == pytest.approx(0.5)
