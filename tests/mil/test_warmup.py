import pytest
from ignite.engine import Engine

from monai_wsseg.mil.loss import TopKBottomKMILLoss
from monai_wsseg.mil.warmup import ProxyWarmup


def test_slide_labels_during_warmup_then_the_papers_proxy_labels():
    loss = TopKBottomKMILLoss(alpha=0.2, beta=0.2)
    warm = ProxyWarmup(loss, epochs=2)
    engine = Engine(lambda e, b: None)
    seen = []
    for epoch in (1, 2, 3, 4, 2):  # the last: a resumed run going back to epoch 2
        engine.state.epoch = epoch
        warm(engine)
        seen.append((loss.alpha, loss.beta))
    assert seen == [(1.0, 0.0), (1.0, 0.0), (0.2, 0.2), (0.2, 0.2), (1.0, 0.0)]


def test_a_ramp_moves_the_shares_linearly_to_the_papers():
    loss = TopKBottomKMILLoss(alpha=0.2, beta=0.2)
    warm = ProxyWarmup(loss, epochs=2, ramp=2)
    got = [warm.shares(e) for e in range(1, 7)]
    want = [(1.0, 0.0), (1.0, 0.0), (0.2 + 0.8 * 2 / 3, 0.2 / 3), (0.2 + 0.8 / 3, 0.4 / 3), (0.2, 0.2), (0.2, 0.2)]
    assert [v for pair in got for v in pair] == pytest.approx([v for pair in want for v in pair])
    engine = Engine(lambda e, b: None)
    engine.state.epoch = 4
    warm(engine)
    assert (loss.alpha, loss.beta) == pytest.approx(want[3])
    assert ProxyWarmup(TopKBottomKMILLoss(0.2, 0.2), epochs=0, ramp=3).shares(1) == (0.2, 0.2)  # nothing to ramp from


def test_warmup_labels_every_patch_of_a_tumor_slide():
    import torch

    loss = TopKBottomKMILLoss(alpha=0.2, beta=0.2)
    engine = Engine(lambda e, b: None)
    engine.state.epoch = 1
    ProxyWarmup(loss, epochs=1)(engine)
    target, mask = loss.proxy_labels(torch.randn(2, 10), torch.tensor([1.0, 0.0]))
    assert target[0].eq(1).all() and target[1].eq(0).all() and mask.all()


def test_bad_warmup():
    with pytest.raises(ValueError, match="epochs"):
        ProxyWarmup(TopKBottomKMILLoss(), epochs=-1)
    with pytest.raises(ValueError, match="ramp"):
        ProxyWarmup(TopKBottomKMILLoss(), epochs=1, ramp=1.5)
    with pytest.raises(ValueError, match="no alpha"):
        ProxyWarmup(object(), epochs=1)
