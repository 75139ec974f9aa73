import pytest
import torch

from monai_wsseg.mil import BagStepSampler


def test_balanced_steps_hold_both_labels_and_cover_every_slide():
    labels = [1, 1, 1, 0, 0]
    torch.manual_seed(3)
    steps = list(BagStepSampler(labels, 2))
    assert len(steps) == 3 == len(BagStepSampler(labels, 2))
    for step in steps:
        assert sorted(labels[i] for i in step) == [0, 1]
    assert {i for s in steps for i in s} == set(range(5))


def test_balanced_steps_are_reproducible_from_torch_seed():
    torch.manual_seed(7)
    a = list(BagStepSampler([1, 0, 1, 0, 1, 1, 0], 4))
    torch.manual_seed(7)
    b = list(BagStepSampler([1, 0, 1, 0, 1, 1, 0], 4))
    assert a == b
    assert all(sum(v for v in ([1, 0, 1, 0, 1, 1, 0][i] for i in s)) == 2 for s in a)


def test_random_steps_are_a_permutation():
    torch.manual_seed(0)
    steps = list(BagStepSampler([1, 1, 1, 0, 0], 2, balanced=False))
    assert [len(s) for s in steps] == [2, 2, 1]
    assert sorted(i for s in steps for i in s) == list(range(5))


@pytest.mark.parametrize("labels, per_step, message", [
    ([1, 1, 1], 2, "none normal"), ([0, 0], 2, "none tumor"), ([1, 0], 1, "bags_per_step ≥ 2"), ([1, 2], 2, "0 or 1"),
])
def test_bad_input(labels, per_step, message):
    with pytest.raises(ValueError, match=message):
        BagStepSampler(labels, per_step)
