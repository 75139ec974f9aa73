"""Non-finite numbers: a NaN or Inf batch stops training at the step it reached, with the last good
checkpoint intact and the weights untouched by the bad step."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events

from monai_wsseg.engines.checkpoints import AtomicCheckpointSaver
from monai_wsseg.networks.checkpoint import load_checkpoint
from tests.faults.conftest import assert_no_partial, expect_clear
from tests.mil.test_trainer import bag_batch, make_trainer


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_batch_names_the_step_and_keeps_the_last_checkpoint(tmp_path, bad):
    torch.manual_seed(0)
    poisoned = bag_batch([1, 0], seed=3)
    poisoned["image"][1, 2, 0, 0, 0] = bad  # one pixel of one patch of the second bag
    poisoned["slide"] = ["good.tif", "poisoned.tif"]
    epochs = {1: [bag_batch([1, 0], seed=1), bag_batch([1, 0], seed=2)]}
    epochs[2] = [bag_batch([1, 0], seed=4), poisoned]

    class Epochs:  # the loader of each epoch, as a DataLoader with fixed batches would give
        def __init__(self) -> None:
            self.epoch = 1

        def __iter__(self):
            return iter(epochs[self.epoch])

        def __len__(self) -> int:
            return 2

    loader = Epochs()
    trainer = make_trainer(loader, epochs=3)
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: setattr(loader, "epoch", e.state.epoch))
    saver = AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": trainer.network, "trainer": trainer},
                                  save_interval=1, n_saved=1, file_prefix="")
    saver.attach(trainer)
    snapshots = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: snapshots.__setitem__(
        e.state.iteration, {k: v.clone() for k, v in e.network.state_dict().items()}))

    exc = expect_clear(f"numbers: {bad} in a batch", trainer.run, names="iteration 4 (epoch 2)",
                       match="poisoned.tif")
    assert isinstance(exc, FloatingPointError) and "the last checkpoint is kept" in str(exc)
    after = trainer.network.state_dict()
    assert all(torch.equal(after[k], snapshots[3][k]) for k in after)  # the bad step changed no weight
    saved = load_checkpoint(tmp_path / "checkpoint_epoch=1.pt")
    assert saved["trainer"]["iteration"] == 2 and saved["trainer"]["epoch_length"] == 2  # end of epoch 1
    assert all(torch.equal(saved["model"][k], snapshots[2][k]) for k in after)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt"]
    assert_no_partial(f"numbers: {bad} in a batch", tmp_path)
