"""The training loader's dataset hears each epoch start before the epoch's items are read."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from monai_wsseg.engines.precision import PrecisionTrainer


class EpochDataset(Dataset):
    def __init__(self) -> None:
        self.epoch, self.calls = 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.calls.append(epoch)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((1, 2, 2), float(self.epoch)), "label": torch.zeros(1, 2, 2)}


def test_precision_trainer_tells_the_dataset_each_epoch():
    dataset, seen = EpochDataset(), []
    net = nn.Conv2d(1, 1, 1)

    def record(engine, batch):
        seen.append(int(batch["image"].flatten()[0]))

    trainer = PrecisionTrainer(device="cpu", max_epochs=3, train_data_loader=DataLoader(dataset, batch_size=2),
                               network=net, optimizer=torch.optim.SGD(net.parameters(), 0.1),
                               loss_function=nn.MSELoss(), precision="fp32", decollate=False,
                               iteration_update=None)
    from ignite.engine import Events

    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: record(e, e.state.batch))
    trainer.run()
    assert dataset.calls == [1, 2, 3]
    assert seen == [1, 1, 2, 2, 3, 3]  # items of epoch e were read after set_epoch(e)
