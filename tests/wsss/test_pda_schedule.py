"""The μ schedule of paper B (eq. 11) and the Ignite handler that sets it on the network each epoch."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from torch import nn

from monai_wsseg.wsss.pda import PDAClassifier
from monai_wsseg.wsss.pda_schedule import (
    PDAScheduleHandler,
    mu_schedule,
    unwrap_network,
)


class TinyBackbone(nn.Module):
    out_channels = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"final": torch.relu(self.conv(x))}


def tiny_classifier(num_classes: int = 2) -> PDAClassifier:
    torch.manual_seed(0)
    return PDAClassifier(TinyBackbone(), num_classes=num_classes, mu=1.0)


def test_schedule_matches_a_hand_loop_for_40_epochs():
    mu, expected = 1.0, []
    for epoch in range(41):
        if epoch >= 3:  # "μ = 1 at the first three epochs", then μ ← max(σμ, l)
            mu = max(0.985 * mu, 0.65)
        expected.append(mu)
    got = [mu_schedule(epoch) for epoch in range(41)]
    assert got == expected
    assert got[:3] == [1.0, 1.0, 1.0] and got[3] == 0.985
    assert got[19] == pytest.approx(0.985 ** 17)  # last epoch of a 20-epoch run
    first_floor = got.index(0.65)
    assert first_floor == 31 and got[30] > 0.65 and all(m == 0.65 for m in got[31:])
    assert all(a >= b for a, b in itertools.pairwise(got))


def test_schedule_options():
    assert [mu_schedule(e, warmup=0, sigma=0.5, floor=0.2) for e in range(4)] == [0.5, 0.25, 0.2, 0.2]
    # the reference code: 0.98 per epoch from epoch 0, no floor reached
    assert mu_schedule(19, decay_start=0, sigma=0.98, floor=0.0) == pytest.approx(0.98 ** 20)
    assert mu_schedule(5, mu0=0.9, floor=0.5) == pytest.approx(0.9 * 0.985 ** 3)
    for bad in ({"epoch": -1}, {"epoch": 0, "sigma": 1.2}, {"epoch": 0, "floor": 1.1}, {"epoch": 0, "warmup": -1}):
        with pytest.raises(ValueError):
            mu_schedule(**bad)


def run_epochs(handler: PDAScheduleHandler, net: nn.Module, epochs: int, engine_network: nn.Module | None = None):
    """Run an Ignite engine for ``epochs`` epochs of 2 iterations; return the μ each iteration saw."""
    seen: list[float | None] = []
    target = unwrap_network(net)

    def step(engine: Engine, batch: int) -> None:
        seen.append(target.mu)

    engine = Engine(step)
    if engine_network is not None:
        engine.network = engine_network
    handler.attach(engine)
    handler.attach(engine)  # attaching twice must not run it twice
    engine.run(range(2), max_epochs=epochs)
    assert engine.state.pda_mu == seen[-1]
    return seen[::2]


def test_handler_sets_mu_every_epoch():
    net = tiny_classifier()
    handler = PDAScheduleHandler(net, warmup=3, sigma=0.985, floor=0.65)
    assert run_epochs(handler, net, 40) == [mu_schedule(e) for e in range(40)]
    assert net.mu == 0.65


def test_handler_modes():
    net = tiny_classifier()
    constant = PDAScheduleHandler(net, mode="constant")
    assert run_epochs(constant, net, 6) == [1.0, 1.0, 1.0, 0.7, 0.7, 0.7]
    none = PDAScheduleHandler(net, mode="none")
    assert run_epochs(none, net, 4) == [None] * 4
    reference = PDAScheduleHandler(net, warmup=3, sigma=0.98, floor=0.0, decay_start=0, warmup_attention=False)
    assert run_epochs(reference, net, 5) == [None, None, None, mu_schedule(3, 3, 0.98, 0.0, decay_start=0),
                                             mu_schedule(4, 3, 0.98, 0.0, decay_start=0)]
    with pytest.raises(ValueError, match="mode"):
        PDAScheduleHandler(net, mode="progressive")


def test_handler_by_engine_attribute_and_resume():
    net = tiny_classifier()
    handler = PDAScheduleHandler("network", warmup=2, sigma=0.9, floor=0.5)
    assert run_epochs(handler, net, 5, engine_network=net) == pytest.approx([1.0, 1.0, 0.9, 0.81, 0.729])
    # stateless: an engine resumed at epoch 11 gets the value of its epoch, not of the handler's history
    engine = Engine(lambda e, b: None)
    engine.network = net
    engine.state.epoch = 11
    handler(engine)
    assert net.mu == mu_schedule(10, warmup=2, sigma=0.9, floor=0.5)
    with pytest.raises(AttributeError, match="net"):
        PDAScheduleHandler("net")(engine)
    with pytest.raises(TypeError, match="mu"):
        PDAScheduleHandler(nn.Linear(2, 2))


def test_handler_unwraps_ddp(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        net = tiny_classifier()
        ddp = nn.parallel.DistributedDataParallel(net)
        assert unwrap_network(ddp) is net
        handler = PDAScheduleHandler(ddp, warmup=1, sigma=0.5, floor=0.3)
        assert run_epochs(handler, ddp, 3) == [1.0, 0.5, 0.3]
        # the wrapped network trains with the μ the handler set
        net.train()
        ddp(torch.randn(2, 3, 8, 8)).sum().backward()
    finally:
        dist.destroy_process_group()


def test_monai_bundle_handler_list(tmp_path):
    """The handler as a bundle names it: in a ConfigParser-built SupervisedTrainer's train_handlers."""
    from monai.bundle import ConfigParser

    config = {
        "network_def": {
            "_target_": "monai_wsseg.wsss.pda.PDAClassifier",
            "backbone": {"_target_": "monai_wsseg.wsss.resnet38.ResNet38d", "width": 0.125},
            "num_classes": 3,
        },
        "network": "$@network_def.to('cpu')",
        "data": "$[{'image': torch.randn(3, 16, 16), 'label': torch.tensor([1.0, 0.0, 1.0])} for _ in range(2)]",
        "trainer": {
            "_target_": "SupervisedTrainer",
            "device": "$torch.device('cpu')",
            "max_epochs": 5,
            "train_data_loader": {"_target_": "DataLoader", "dataset": "@data", "batch_size": 2},
            "network": "@network",
            "optimizer": {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": 0.01},
            "loss_function": {"_target_": "torch.nn.MultiLabelSoftMarginLoss"},
            "train_handlers": [{
                "_target_": "monai_wsseg.wsss.pda_schedule.PDAScheduleHandler",
                "network_or_attr": "network", "warmup": 3, "sigma": 0.985, "floor": 0.65,
            }],
        },
    }
    parser = ConfigParser(config)
    trainer = parser.get_parsed_content("trainer")
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.network.mu))
    trainer.run()
    assert seen == [mu_schedule(e) for e in range(5)]
    assert torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))
