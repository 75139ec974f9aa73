"""Paper B's phase-1 classifier: a backbone, Progressive Dropout Attention (PDA), GAP and a 1×1 classifier.

What is implemented (paper B, equations 4, 5, 7–10; ``m`` = the backbone's final features
``(B, D, h, w)``, ``W`` = the classifier's weights ``(C, D)``):

* eq. 7, class activation maps: ``M_k = ReLU(Σ_d W_kd · m_d)`` → ``(B, C, h, w)``. The paper writes no
  ReLU; the reference code applies one, and we do too by default (``cam_relu=True``) because without
  it the attention below can be negative (it would flip the sign of the features) and the cut-off
  ``μ·max(M_k)`` of a class whose maximum is negative would lie *above* that maximum, dropping
  nothing however small μ is.
* eqs. 8–9, dropout: per image and per class, ``β_k = μ · max_{i,j} M_k(i, j)`` and
  ``M̂_k(i, j) = M_k(i, j)`` where ``M_k(i, j) ≤ β_k``, ``0`` where ``M_k(i, j) > β_k``. With μ = 1 nothing
  is dropped (the maximum itself is kept, ``≤``).
* eq. 10, attention: ``A(i, j) = (1/C) Σ_k M̂_k(i, j)`` → ``(B, 1, h, w)``, the mean over *all* C classes
  (present or not) of the *dropped* maps. The extracted formula prints ``M_k`` without the hat, but the
  text says "the average of all the deactivated CAM", the reference averages the dropped maps, and
  with the undropped maps μ would have no effect at all.
* eq. 4, re-weighting: ``m̃ = A · m`` (A broadcast over the D channels).
* eq. 5, scores: ``ŷ_k = W_k · GAP(Dropout2d(m̃))`` (the reference's Dropout2d(0.5) before the pool;
  the paper does not mention it: ``dropout=0`` removes it). The classifier has no bias.

Gradients flow through A into both the features and the classifier weights (the paper does not stop
them; the ``>`` comparison itself has no gradient). Loss: ``torch.nn.MultiLabelSoftMarginLoss`` on
the logits against the multi-hot patch labels.

States (``mu`` is set per epoch by :class:`monai_wsseg.wsss.pda_schedule.PDAScheduleHandler`):

==============  =========================================  ===========================================
``mu``          training forward                           eval forward
==============  =========================================  ===========================================
float in (0,1]  eqs. 7–10 with this μ, then eq. 4–5        ``eval_attention=True`` (default): eqs.
                                                           7–10 with μ = 1 (attention, nothing
                                                           dropped); ``False``: plain GAP classifier
``None``        plain GAP classifier (no attention)        plain GAP classifier
==============  =========================================  ===========================================

The paper's classifier output is always ``m̃ = A·m`` (eqs. 4–5) and dropout is the training-time
part, so the default evaluates with the attention and nothing dropped (train and eval are then the same
function at μ = 1). ``eval_attention=False`` evaluates without any attention, and ``mu=None`` is the
plain CAM classifier (the "Phase 1 without PDA" ablation; the reference's first three epochs).

Grad-CAM hook points: ``features(x)`` returns the backbone's named maps (``"b4_3"``, ``"b4_5"``,
``"b5_2"``, ``"bn7"``, ``"final"`` with :class:`~monai_wsseg.wsss.resnet38.ResNet38d`), all inside the
autograd graph, and ``head(features)`` maps them to logits, so a batched multi-layer Grad-CAM is::

    feats = net.features(x)                       # {name: (B, D_l, h, w)}
    logits = net.head(feats)                      # (B, C)
    grads = torch.autograd.grad(logits[:, k].sum(), [feats[n] for n in ("b4_3", "b5_2", "bn7")])

``forward_with_features(x)`` returns ``(logits, feats)`` in one call (the protocol of
:func:`monai_wsseg.wsss.cam.multi_layer_gradcam`). The same tensors are what forward hooks on
``net.backbone.b4_3`` / ``.b5_2`` / ``.bn7`` see (module names ``"backbone.b4_3"`` … for hook-based tools);
``bn7`` is the BatchNorm output before its ReLU, ``final`` = ReLU(bn7) is what the classifier reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

__all__ = ["PDAClassifier", "class_activation_maps", "dropout_attention"]


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """Eq. 7: ``(B, D, h, w)`` features, ``(C, D)`` or ``(C, D, 1, 1)`` weights → ``(B, C, h, w)`` CAMs."""
    if weight.ndim == 2:
        weight = weight[:, :, None, None]
    cams = F.conv2d(features, weight)
    return F.relu(cams) if relu else cams


def dropout_attention(cams: torch.Tensor, mu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 8–10: drop each class map's values above ``mu`` × its maximum, average the rest over classes.

    Args:
        cams: ``(B, C, h, w)`` class activation maps ``M``.
        mu: dropout coefficient μ; the cut-off is ``β = μ · max_{i,j} M_k`` per image and class.

    Returns:
        ``(dropped, attention)``: ``M̂`` ``(B, C, h, w)`` (values ``> β`` set to 0, the others unchanged)
        and ``A = mean_k M̂_k`` ``(B, 1, h, w)``.
    """
    if cams.ndim != 4:
        raise ValueError(f"cams must be (B, C, h, w), got shape {tuple(cams.shape)}")
    beta = mu * cams.amax(dim=(2, 3), keepdim=True)
    dropped = torch.where(cams > beta, torch.zeros_like(cams), cams)
    return dropped, dropped.mean(dim=1, keepdim=True)


def _check_mu(mu: float | None) -> float | None:
    if mu is None:
        return None
    mu = float(mu)
    if not 0.0 < mu <= 1.0:
        raise ValueError(f"mu must be in (0, 1] or None (no PDA), got {mu}")
    return mu


class PDAClassifier(nn.Module):
    """Multi-label patch classifier with Progressive Dropout Attention (see the module docstring).

    Args:
        backbone: a module whose forward maps ``(B, 3, H, W)`` to a dict of named feature maps that
            contains ``feature_key`` (e.g. :class:`~monai_wsseg.wsss.resnet38.ResNet38d`).
        num_classes: C, the number of tissue classes (any number ≥ 1).
        mu: initial dropout coefficient μ in (0, 1], or ``None`` for no PDA at all.
        feature_key: the backbone feature the classifier reads (``"final"`` = ReLU(bn7) for ResNet38d).
        in_channels: channels of that feature; default ``backbone.out_channels``.
        dropout: Dropout2d probability between the attention and the pool (reference: 0.5).
        cam_relu: apply ReLU to the CAMs of eq. 7 (reference; see the module docstring).
        eval_attention: in eval mode, apply the attention with nothing dropped (True) or skip it (False).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mu: float | None = 1.0,
        *,
        feature_key: str = "final",
        in_channels: int | None = None,
        dropout: float = 0.5,
        cam_relu: bool = True,
        eval_attention: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if in_channels is None:
            in_channels = getattr(backbone, "out_channels", None)
            if not isinstance(in_channels, int):
                raise ValueError("in_channels not given and the backbone has no integer `out_channels`")
        out_layers = getattr(backbone, "out_layers", None)
        if out_layers is not None and feature_key not in out_layers:
            raise ValueError(f"the backbone does not return {feature_key!r} (its out_layers: {list(out_layers)})")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.feature_key = feature_key
        self.cam_relu = bool(cam_relu)
        self.eval_attention = bool(eval_attention)
        self.dropout = nn.Dropout2d(dropout)
        # A 1×1 convolution without bias, so that CAMs are the classifier applied at every location.
        self.classifier = nn.Conv2d(in_channels, num_classes, 1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        self._mu = _check_mu(mu)

    @property
    def mu(self) -> float | None:
        """The dropout coefficient μ used by the training forward (``None``: PDA off)."""
        return self._mu

    @mu.setter
    def mu(self, value: float | None) -> None:
        self._mu = _check_mu(value)

    @override
    def extra_repr(self) -> str:
        return f"mu={self._mu}, eval_attention={self.eval_attention}, cam_relu={self.cam_relu}"

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` → the backbone's named feature maps (Grad-CAM hook points, in the graph)."""
        feats = self.backbone(x)
        if not isinstance(feats, dict) or self.feature_key not in feats:
            got = list(feats) if isinstance(feats, dict) else type(feats).__name__
            raise ValueError(f"the backbone must return a dict with {self.feature_key!r}, got {got}")
        return feats

    def cams(self, features: torch.Tensor) -> torch.Tensor:
        """Eq. 7 on a final feature map: ``(B, D, h, w)`` → ``(B, C, h, w)`` CAMs (ReLU if ``cam_relu``)."""
        return class_activation_maps(features, self.classifier.weight, relu=self.cam_relu)

    def _active_mu(self) -> float | None:
        """μ for this forward: the set μ in training, 1 (no dropping) or None in eval."""
        if self._mu is None:
            return None
        if self.training:
            return self._mu
        return 1.0 if self.eval_attention else None

    def _head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m = feats[self.feature_key]
        out: dict[str, torch.Tensor] = {}
        mu = self._active_mu()
        cams = self.cams(m)
        out["cams"] = cams
        if mu is not None:
            dropped, attention = dropout_attention(cams, mu)
            m = m * attention  # eq. 4: m̃ = A·m
            out["dropped_cams"], out["attention"] = dropped, attention
        pooled = F.adaptive_avg_pool2d(self.dropout(m), 1)  # GAP(m̃), eq. 5
        out["logits"] = self.classifier(pooled).flatten(1)
        return out

    def head(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Named features (from :meth:`features`) → ``(B, C)`` logits, with PDA as the current state says."""
        return self._head(feats)["logits"]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(B, 3, H, W)`` → ``(logits (B, C), {name: (B, D_l, h, w)})``, the features inside the graph.

        This is the ``forward_with_features`` protocol of :mod:`monai_wsseg.wsss.cam`: pass the bound
        method (``net.forward_with_features``) and name the layers ``"b4_3"``, ``"b5_2"``, ``"bn7"``.
        (With forward hooks instead, the same tensors are at ``"backbone.b4_3"`` etc.)
        """
        feats = self.features(x)
        return self.head(feats), feats

    def forward(
        self, x: torch.Tensor, return_cams: bool = False, return_features: bool = False
    ) -> torch.Tensor | dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """``(B, 3, H, W)`` → ``(B, C)`` logits.

        With ``return_cams`` and/or ``return_features`` a dict is returned instead: ``"logits"``
        ``(B, C)``; ``"cams"`` ``(B, C, h, w)`` (eq. 7 on the un-re-weighted final features) and, when the
        attention was applied, ``"dropped_cams"`` ``(B, C, h, w)`` and ``"attention"`` ``(B, 1, h, w)``;
        ``"features"``: the backbone's ``{name: (B, D_l, h, w)}`` dict.
        """
        feats = self.features(x)
        out = self._head(feats)
        if not (return_cams or return_features):
            return out["logits"]
        result: dict[str, torch.Tensor | dict[str, torch.Tensor]] = {"logits": out["logits"]}
        if return_cams:
            result.update({k: v for k, v in out.items() if k != "logits"})
        if return_features:
            result["features"] = feats
        return result
