"""The precision setting: how it resolves per device, and that bf16 runs agree with fp32 in inference and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from monai_wsseg.utils import precision as precision_module
from monai_wsseg.utils.precision import PRECISIONS, cpu_has_bf16, resolve_precision


def test_settings_resolve_per_device(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)
    auto = resolve_precision("auto", "cpu")
    assert (auto.name, auto.channels_last, auto.dtype, auto.requested) == ("bf16", True, torch.bfloat16, "auto")
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu").name == "fp32"
    assert resolve_precision("bf16", "cpu").name == "bf16"  # asked for by name: honoured (emulated if need be)
    fp32 = resolve_precision("fp32", "cpu")
    assert fp32.dtype is None and not fp32.channels_last and not fp32.needs_scaler
    cuda = resolve_precision("fp16", "cuda")
    assert cuda.needs_scaler and not cuda.channels_last and cuda.as_dict()["device"] == "cuda"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16, got 'half'"):
        resolve_precision("half")
    with pytest.raises(ValueError, match="'fp16' is for CUDA; on a CPU use 'bf16'"):
        resolve_precision("fp16", "cpu")
    assert set(PRECISIONS) == {"auto", "fp32", "bf16", "fp16"}
    assert isinstance(cpu_has_bf16(), bool)


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 1, 3, padding=1), nn.AvgPool2d(4))

    def forward(self, x):
        return self.body(x)


def test_bf16_forward_agrees_with_fp32_with_channels_last_inputs(one_thread):
    x = torch.rand(2, 3, 32, 32)
    net = SmallNet().eval()
    with torch.no_grad():
        reference = torch.sigmoid(net(x))
        bf16 = resolve_precision("bf16", "cpu")
        assert bf16.inputs(x).is_contiguous(memory_format=torch.channels_last)
        assert not bf16.for_training().channels_last and bf16.for_training().dtype == torch.bfloat16
        with bf16.autocast():
            fast = net(bf16.inputs(x))
    assert fast.dtype == torch.bfloat16 and net.body[0].weight.is_contiguous()  # the weights keep their layout
    diff = (torch.sigmoid(fast.float()) - reference).abs()
    assert 0 < diff.max() < 0.02  # not bit-identical (the autocast did run), yet close


def test_precision_trainer_learns_in_bf16_and_refuses_amp(one_thread):
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    from monai_wsseg.engines.precision import PrecisionEvaluator, PrecisionTrainer

    torch.manual_seed(0)
    bright = (torch.arange(16) % 2).float().view(16, 1, 1, 1)
    x = torch.rand(16, 3, 16, 16) * 0.5 + 0.5 * bright  # bright images are class 1
    y = bright.expand(-1, 1, 4, 4).contiguous()
    data = [{"image": x[i : i + 4], "label": y[i : i + 4]} for i in range(0, 16, 4)]
    losses = {}
    for name in ("fp32", "bf16"):
        net = SmallNet()
        trainer = PrecisionTrainer(device="cpu", max_epochs=15, train_data_loader=data, network=net,
                                   optimizer=torch.optim.Adam(net.parameters(), 0.01),
                                   loss_function=nn.BCEWithLogitsLoss(), precision=name, decollate=False)
        assert isinstance(trainer, SupervisedTrainer) and trainer.precision.name == name
        first: list[float] = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1),
                                  lambda e, first=first: first.append(float(e.state.output["loss"].detach())))
        trainer.run()
        losses[name] = float(trainer.state.output["loss"].detach())
        assert losses[name] < 0.9 * float(first[0]), f"{name} did not learn"
        evaluator = PrecisionEvaluator(device="cpu", val_data_loader=data[:1], network=net, precision=name,
                                       decollate=False)
        evaluator.run()
        assert evaluator.state.output["pred"].dtype == torch.float32
    assert abs(losses["bf16"] - losses["fp32"]) < 0.02
    with pytest.raises(ValueError, match="PrecisionTrainer takes precision="):
        PrecisionTrainer(device="cpu", max_epochs=1, train_data_loader=data, network=SmallNet(),
                         optimizer=None, loss_function=None, amp=True)


def test_wsi_inferer_maps_in_bf16_match_fp32(tmp_path, one_thread):
    from monai_wsseg.inference.engine import WSIInferer
    from monai_wsseg.wsi.slide import open_slide
    from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
    from tests.conftest import smooth_rgb
    from tests.inference.test_cohort import TinyFCN

    path = write_pyramidal_tiff(tmp_path / "s.tif", smooth_rgb(512, 768, seed=3), 0.5)
    maps = {}
    for name in ("fp32", "bf16"):
        inferer = WSIInferer(TinyFCN(), mpp=0.5, stride=16, tile=256, halo=32, num_workers=0, progress=False,
                             precision=name)
        assert inferer.precision.name == name
        with open_slide(path) as slide:
            maps[name] = inferer(slide).probabilities[0]
    both = ~np.isnan(maps["fp32"])
    assert both.sum() > 100 and np.array_equal(both, ~np.isnan(maps["bf16"]))
    diff = np.abs(maps["fp32"][both] - maps["bf16"][both])
    assert 0 < diff.max() < 0.02
