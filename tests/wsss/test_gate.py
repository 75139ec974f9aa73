"""The classification gate: closed classes never win, background is never gated, the all-closed rule,
and why the gate must act on probabilities rather than logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_wsseg.wsss.deeplab import DeepLabV3Plus
from monai_wsseg.wsss.gate import GatedSegmenter, apply_gate, open_classes

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_closed_class_never_wins_property():
    """Random probabilities (including softmax underflow), classifier outputs and thresholds."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        b, c = int(torch.randint(1, 5, (1,), generator=gen)), int(torch.randint(2, 7, (1,), generator=gen))
        scale = [1.0, 10.0, 300.0][trial % 3]  # 300: float32 softmax underflows to exact zeros
        probs = torch.softmax(scale * torch.randn(b, c, 6, 5, generator=gen), dim=1)
        class_probs = torch.rand(b, c, generator=gen)
        eps = float(torch.rand((), generator=gen)) * 0.9
        bg = None if trial % 2 else int(torch.randint(0, c, (1,), generator=gen))
        gated = apply_gate(probs, class_probs, eps, bg)
        closed = class_probs <= eps
        if bg is not None:
            closed[:, bg] = False
        gateable = torch.ones(c, dtype=torch.bool)
        if bg is not None:
            gateable[bg] = False
        all_closed = (closed | ~gateable).all(dim=1)  # no gateable class open → sample left ungated
        winner = gated.argmax(dim=1)  # (b, 6, 5)
        for i in range(b):
            if all_closed[i]:
                torch.testing.assert_close(gated[i], probs[i].clamp_min(torch.finfo(probs.dtype).tiny))
                continue
            assert not closed[i][winner[i]].any(), f"trial {trial}: a closed class won"
            assert (gated[i][closed[i]] == 0).all()
            torch.testing.assert_close(gated[i][~closed[i]], probs[i][~closed[i]], rtol=0, atol=1e-37)


def test_paper_threshold_is_inclusive_and_maps_are_zeroed():
    probs = torch.full((1, 3, 2, 2), 1 / 3)
    gated = apply_gate(probs, torch.tensor([[0.1, 0.5, 0.10001]]), epsilon=0.1)  # ŷ ≤ ε closes
    assert (gated[0, 0] == 0).all()
    torch.testing.assert_close(gated[0, 1:], probs[0, 1:])


def test_background_is_never_gated():
    probs = torch.softmax(torch.randn(2, 4, 3, 3), dim=1)
    class_probs = torch.tensor([[0.0, 0.9, 0.0, 0.0], [0.0, 0.0, 0.0, 0.8]])  # background column 0 says 0
    gated = apply_gate(probs, class_probs, 0.1, background_index=0)
    torch.testing.assert_close(gated[:, 0], probs[:, 0])
    assert (gated[0, 2:] == 0).all() and (gated[1, 1:3] == 0).all()
    # A tissue-only classifier (C - 1 outputs): a background column is inserted, never gated.
    tissue_only = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.0, 0.8]])
    torch.testing.assert_close(apply_gate(probs, tissue_only, 0.1, background_index=0), gated)
    keep = open_classes(torch.tensor([[0.0, 0.0, 0.9]]), 4, 0.1, background_index=2)
    assert keep.tolist() == [[False, False, True, True]]


def test_all_closed_sample_is_left_ungated():
    probs = torch.softmax(torch.randn(2, 3, 4, 4), dim=1)
    class_probs = torch.tensor([[0.05, 0.02, 0.1], [0.05, 0.9, 0.0]])  # sample 0: every class closed
    gated = apply_gate(probs, class_probs, 0.1)
    torch.testing.assert_close(gated[0], probs[0])
    assert (gated[1, [0, 2]] == 0).all()
    # With a background channel, "every class" means every tissue class: background alone does not count.
    gated = apply_gate(probs, torch.tensor([[0.0, 0.05], [0.0, 0.9]]), 0.1, background_index=0)
    torch.testing.assert_close(gated[0], probs[0])
    assert (gated[1, 1] == 0).all() and (gated[1, 2] > 0).all()


def test_gating_logits_is_wrong_and_refused():
    # One pixel, three classes: open classes 0 and 1 have negative logits, class 2 is closed.
    logits = torch.tensor([-2.0, -1.0, 3.0]).view(1, 3, 1, 1)
    class_probs = torch.tensor([[0.9, 0.8, 0.05]])
    gate = (class_probs > 0.1).float()[:, :, None, None]
    # The reference code's way: gated logits give the closed class logit 0 > -1 → it wins the argmax,
    # and the softmax still gives it a sizeable share.
    gated_logits = logits * gate
    assert gated_logits.argmax(dim=1).item() == 2
    assert torch.softmax(gated_logits, dim=1)[0, 2].item() > 0.5
    # Gating probabilities: the closed class has probability 0 and an open class wins.
    gated = apply_gate(torch.softmax(logits, dim=1), class_probs, 0.1)
    assert gated[0, 2].item() == 0 and gated.argmax(dim=1).item() == 1
    # Logits are refused outright, as are classifier logits in place of probabilities.
    with pytest.raises(ValueError, match="never logits"):
        apply_gate(logits, class_probs, 0.1)
    with pytest.raises(ValueError, match="sigmoid"):
        apply_gate(torch.softmax(logits, dim=1), torch.tensor([[2.0, -1.0, 0.5]]), 0.1)


def test_input_errors():
    probs = torch.full((2, 3, 2, 2), 1 / 3)
    with pytest.raises(ValueError, match="has 2 classes, the segmentation 3"):
        apply_gate(probs, torch.rand(2, 2))
    with pytest.raises(ValueError, match="batch sizes differ"):
        apply_gate(probs, torch.rand(1, 3))
    with pytest.raises(ValueError, match=r"probabilities must be \(B, C, H, W\)"):
        apply_gate(probs[0], torch.rand(2, 3))
    with pytest.raises(ValueError, match="epsilon"):
        apply_gate(probs, torch.rand(2, 3), epsilon=1.0)
    with pytest.raises(ValueError, match="background_index 3"):
        apply_gate(probs, torch.rand(2, 3), background_index=3)
    with pytest.raises(ValueError, match="lie in"):
        apply_gate(torch.full((2, 3, 2, 2), float("nan")), torch.rand(2, 3))


class _Fixed(nn.Module):
    """Returns a fixed tensor whatever the input (a stand-in network)."""

    def __init__(self, out) -> None:
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out


def test_gated_segmenter_at_inference():
    torch.manual_seed(0)
    seg = DeepLabV3Plus(num_classes=4, backbone="resnet18").eval()
    cls_logits = torch.tensor([[3.0, -5.0, 0.5, -3.0], [-4.0, 2.0, -4.0, -4.0]])  # sigmoid: open 0, 2 | 1
    model = GatedSegmenter(seg, _Fixed(cls_logits), epsilon=0.1).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        expected = apply_gate(torch.softmax(seg(x), 1), torch.sigmoid(cls_logits), 0.1)
    assert out.shape == (2, 4, 32, 32)
    torch.testing.assert_close(out, expected)
    assert set(out.argmax(1)[0].unique().tolist()) <= {0, 2}
    assert (out.argmax(1)[1] == 1).all()
    # Classifier outputs shaped (B, C, 1, 1), or a tuple whose first element is the logits.
    seg_logits = torch.randn(2, 4, 5, 5)
    for cls_out in (cls_logits[:, :, None, None], (cls_logits, "cams")):
        gated = GatedSegmenter(_Fixed(seg_logits), _Fixed(cls_out))(x)
        torch.testing.assert_close(gated, apply_gate(torch.softmax(seg_logits, 1), torch.sigmoid(cls_logits)))
