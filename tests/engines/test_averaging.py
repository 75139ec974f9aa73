import itertools

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from monai_wsseg.engines.averaging import WeightEMA
from monai_wsseg.engines.metrics_table import ValidationTable
from monai_wsseg.engines.schedules import lr_scheduler


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


def test_ema_follows_slowly_and_averages_buffers():
    net = _net()
    ema = WeightEMA(net, decay=0.9)
    assert ema.module is not net
    start = ema.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.add_(2.0)
    net[1].num_batches_tracked += 5
    for _ in range(30):
        ema.update()
    moved = (ema.module[0].weight - start).mean().item()
    assert 0.9 < moved <= 1.0  # converged towards the new weights
    assert ema.module[1].num_batches_tracked.item() == net[1].num_batches_tracked.item()
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_first_update_mostly_copies_and_state_round_trips():
    net = _net()
    ema = WeightEMA(net, decay=0.99)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update()  # d_0 = 0: the first update copies
    assert torch.allclose(ema.module[0].weight, net[0].weight, atol=1e-6)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update()  # d_1 = 1/2: the mean of the two
    assert torch.allclose(ema.module[0].weight, net[0].weight - 0.5, atol=1e-5)
    other = WeightEMA(_net(), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 2 and torch.equal(other.module[0].weight, ema.module[0].weight)


def test_ema_off_is_the_network_itself():
    net = _net()
    ema = WeightEMA(net, decay=0.0)
    ema.update()
    assert ema.module is net
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(net, decay=1.0)


def test_cosine_schedule_ends_low_constant_stays():
    opt = torch.optim.SGD(_net().parameters(), lr=1.0)
    sched = lr_scheduler(opt, "cosine", epochs=4, final_fraction=0.1)
    rates = []
    for _ in range(5):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in itertools.pairwise(rates))
    opt2 = torch.optim.SGD(_net().parameters(), lr=1.0)
    lr_scheduler(opt2, "constant").step()
    assert opt2.param_groups[0]["lr"] == 1.0
    with pytest.raises(ValueError, match="schedule must be"):
        lr_scheduler(opt2, "step")


def test_poly_schedule_is_paper_b_with_a_floor():
    opt = torch.optim.SGD(_net().parameters(), lr=2.0)
    sched = lr_scheduler(opt, "poly", epochs=5, final_fraction=0.05, power=0.9)
    rates = []
    for _ in range(6):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [2.0 * max(0.05, (1 - e / 5) ** 0.9) for e in range(6)]
    assert rates == pytest.approx(expected)
    assert rates[-1] == pytest.approx(0.1)  # the floor, not 0
    with pytest.raises(ValueError, match="power > 0"):
        lr_scheduler(opt, "poly", epochs=5, power=0)


def test_validation_table_rewrites_and_resumes(tmp_path):
    path = tmp_path / "validation.csv"
    table = ValidationTable(path)
    engine = Engine(lambda e, b: None)
    for epoch, value in ((1, 0.5), (2, float("nan")), (2, 0.7)):
        engine.state.epoch = epoch
        engine.state.metrics = {"val_auc": value, "val_label_score": value / 2, "ignored": "text"}
        table(engine)
    lines = path.read_text().splitlines()
    assert lines == ["epoch,val_auc,val_label_score", "1,0.500000,0.250000", "2,0.700000,0.350000"]
    assert not list(tmp_path.glob(".*tmp*"))
