"""Batched multi-layer Grad-CAM and CAM → pseudo-mask conversion (paper B, phase one).

Paper B turns a multi-label patch classifier into pixel-level pseudo masks with Grad-CAM at three layers
(``b4_3``, ``b5_2``, ``bn7`` of ResNet38): for every class present in the patch label, the gradient of
that class's logit weights the layer's channels, the weighted sum is upsampled to the patch, and the
argmax over the present classes (white background aside) is the mask.

The reference code builds one Grad-CAM object per image and runs one forward *and* one backward per
class per image (absent classes included), once per layer. Here a batch of ``B`` images costs **one
forward** and ``max_b |present_b|`` backwards for all layers together: in eval mode (BatchNorm on running
statistics, dropout off) no image's logits depend on another image, so ``∂(Σ_b y[b, c_b]) / ∂A[b] =
∂y[b, c_b] / ∂A[b]`` — one backward gives each image the gradient of its own chosen class ``c_b``, and of
every requested layer at once.

The network is reached through a small protocol, so any classifier can be used:

``forward_with_features(images) -> (logits (B, C), {layer_name: activation (B, K, h, w)})``

with the activations part of the autograd graph. :class:`HookedForward` builds such a function from any
``nn.Module`` and the names of its submodules (``dict(model.named_modules())[name]``) with forward hooks.

Choices (paper vs reference code, see ``/work/shared/REFERENCE.md``):

* ``relu=True`` (default) is Grad-CAM as published (Selvaraju et al., which the paper cites):
  ``ReLU(Σ_k α_k A_k)`` at feature resolution, then bilinear upsampling. ``relu=False`` is what the
  reference code does (signed maps, no ReLU).
* ``normalise="global"`` scales all class maps of an image together, as the reference does, so the
  argmax between classes is exactly that of the raw maps. With ``relu=True`` that is a division by the
  image's maximum (0 stays "no evidence"); with ``relu=False`` it is a min–max over the present classes
  (signed maps need the shift to land in [0, 1]). The reference takes its min and max over *all* class
  maps, absent ones included; that changes only the values, never the mask, and here absent classes are
  not even computed. ``"per_class"`` scales each class by its own maximum (min–max when
  ``relu=False``): every present class then peaks at 1, which favours weak classes in the argmax.
  ``"none"`` returns the raw maps.
* The score differentiated is the class **logit** (as the reference: ``fc8`` output, before the sigmoid),
  through whatever eval-mode forward the network has. The reference computes its CAMs with ``Net_CAM``,
  a plain GAP classifier without the PDA module; ``PDAClassifier(eval_attention=False)`` is that path,
  its default (attention with μ = 1, nothing dropped) differentiates through the attention too.
* Layer activations are what the protocol (or the hooked module) returns. The reference's ``bn7`` CAM is
  taken on ``ReLU(bn7)`` — ``"final"`` in :class:`~monai_wsseg.wsss.resnet38.ResNet38d`, whose
  ``"bn7"`` is the BatchNorm output before the ReLU (negative values, gradients not masked by the ReLU).

Speed (2 shared CPU cores, a 17k–66k-parameter ResNet38-shaped toy, 16 × 224² patches, ~2 of 4 classes
each): batching buys nothing on a CPU — at batch 16 the activations fall out of cache (the forward alone
is ~1.7× slower per image than at batch 1) and images with fewer classes idle through the extra
backwards, so one call on 16 images took 1.3–2× as long as 16 calls on one image; batches of 2–4 are
fastest there. The reference's procedure (per layer × per image × per class, one forward + backward each)
took 3.6–4.1× as long as the batch of 16. On a GPU, batching is what fills the device.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ForwardWithFeatures",
    "HookedForward",
    "cams_to_mask",
    "check_layer_names",
    "multi_layer_gradcam",
    "normalise_cams",
]

#: ``images (B, 3, H, W) -> (logits (B, C), {layer: activation (B, K, h, w)})``; activations in the graph.
ForwardWithFeatures = Callable[[torch.Tensor], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]

Normalise = Literal["global", "per_class", "none"]
_NORMALISE = ("global", "per_class", "none")


# ------------------------------------------------------------------------------------------ hooks
def check_layer_names(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """The submodules of ``model`` named ``layers`` (``dict(model.named_modules())[name]``).

    Raises:
        ValueError: no layers, a repeated name, or a name that is not a submodule (the message suggests
            close names and lists some that exist).
    """
    if isinstance(layers, str):
        raise ValueError(f"layers must be a sequence of module names, got the string {layers!r}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one submodule, e.g. ['b4_3', 'b5_2', 'bn7']")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers has repeated names: {layers}")
    modules = dict(model.named_modules())
    found: dict[str, nn.Module] = {}
    for name in layers:
        if name == "" or name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            some = ", ".join(n for n in list(modules)[1:13])
            raise ValueError(f"layer {name!r} is not a submodule of {type(model).__name__}{hint} "
                             f"(modules include: {some}{', ...' if len(modules) > 13 else ''})")
        found[name] = modules[name]
    return found


def _default_logits(output: Any) -> torch.Tensor:
    """``(B, C)`` logits from a network output: the first element of a tuple/list, ``"logits"`` of a dict;
    dense ``(B, C, h, w)`` logits are averaged over space (for a linear 1×1 head that is the network's own
    global-pool prediction, e.g. :class:`~monai_wsseg.networks.fcn.ResNetFCN`)."""
    if isinstance(output, Mapping):
        if "logits" not in output:
            raise ValueError(f"network returned a dict without 'logits' (keys: {list(output)}); pass output_transform")
        output = output["logits"]
    elif isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"network output is a {type(output).__name__}, not logits; pass output_transform")
    if output.ndim == 4:
        output = output.mean(dim=(2, 3))
    if output.ndim != 2:
        raise ValueError(f"logits must be (B, C) or dense (B, C, h, w), got shape {tuple(output.shape)}")
    return output


class HookedForward:
    """A :data:`ForwardWithFeatures` for any ``nn.Module``: forward hooks record named submodule outputs.

    Hooks are registered for the duration of each call only, so the model is left untouched between calls
    (and can be trained, saved or scripted as usual). The activation is the module's output as the
    network later uses it: a functional ``F.relu(module(x))`` after it is *not* included, while an
    in-place op on it (``nn.ReLU(inplace=True)``) is, for the values and the gradient alike.

    Args:
        model: the classifier; call ``model.eval()`` before computing CAMs (see :func:`multi_layer_gradcam`).
        layers: names of submodules whose outputs are the CAM activations, as in ``model.named_modules()``.
        output_transform: maps the model's output to ``(B, C)`` logits; default: a tensor as is (dense
            ``(B, C, h, w)`` logits averaged over space), the first element of a tuple, ``"logits"`` of a dict.

    Calling it with images ``(B, 3, H, W)`` returns ``(logits (B, C), {layer: (B, K, h, w)})``.

    Raises:
        ValueError: at construction, an unknown layer name; at call time, a layer that did not run, ran more
            than once (a shared module: its activation is ambiguous), or whose output is not a 4-D tensor.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str],
                 output_transform: Callable[[Any], torch.Tensor] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.modules = check_layer_names(model, layers)
        self.layers = list(self.modules)
        self.output_transform = output_transform or _default_logits

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``images`` ``(B, 3, H, W)`` → ``(logits (B, C), {layer: activation (B, K, h, w)})``."""
        captured: dict[str, list[Any]] = {name: [] for name in self.layers}

        def hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
            def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
                captured[name].append(output)
            return record

        handles = [module.register_forward_hook(hook(name)) for name, module in self.modules.items()]
        try:
            output = self.model(images)
        finally:
            for handle in handles:
                handle.remove()
        features: dict[str, torch.Tensor] = {}
        for name, outs in captured.items():
            if len(outs) != 1:
                what = "did not run" if not outs else f"ran {len(outs)} times (a shared module)"
                raise ValueError(f"layer {name!r} {what} in one forward pass of {type(self.model).__name__}; "
                                 "Grad-CAM needs exactly one activation per layer")
            out = outs[0]
            if not isinstance(out, torch.Tensor) or out.ndim != 4:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"layer {name!r} output must be a (B, K, h, w) tensor, got {shape}")
            features[name] = out
        return self.output_transform(output), features


# ------------------------------------------------------------------------------------- Grad-CAM
def _check_inputs(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    labels = torch.as_tensor(labels)
    if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must be (B, C) multi-hot with B = {images.shape[0]}, got {tuple(labels.shape)}")
    return labels.to(device=images.device) > 0.5


def normalise_cams(cams: torch.Tensor, present: torch.Tensor, normalise: Normalise = "global", *,
                   relu: bool = True) -> torch.Tensor:
    """Scale class maps to [0, 1]; absent classes stay 0.

    Args:
        cams: ``(B, C, H, W)`` maps (``≥ 0`` when ``relu``; signed otherwise), absent classes already 0.
        present: ``(B, C)`` bool.
        normalise: ``"global"`` — one scale per image over all its present classes (division by the max if
            ``relu``, else min–max); ``"per_class"`` — each class by its own max (min–max if not ``relu``);
            ``"none"`` — unchanged.
        relu: whether the maps are non-negative Grad-CAMs (division) or signed ones (min–max).

    A map (or image) that is constant gives zeros, never NaN: the divisor is clamped to the smallest
    positive float, which leaves every real ratio exact (an additive eps would bias small-scale maps).
    """
    if normalise not in _NORMALISE:
        raise ValueError(f"normalise must be one of {_NORMALISE}, got {normalise!r}")
    if normalise == "none":
        return cams
    tiny = torch.finfo(cams.dtype).tiny
    mask = present[:, :, None, None].expand_as(cams)
    dims: tuple[int, ...] = (1, 2, 3) if normalise == "global" else (2, 3)
    if relu:
        # Maps are >= 0; zeroing absent classes first makes the division keep them at exactly 0.
        cams = cams.masked_fill(~mask, 0.0)
        top = cams.amax(dim=dims, keepdim=True)
        return cams.div_(top.clamp_min(tiny))
    else:
        # Min and max over present classes only: absent classes are zeros that are not CAM values.
        inf = torch.tensor(float("inf"), dtype=cams.dtype, device=cams.device)
        lo = torch.where(mask, cams, inf).amin(dim=dims, keepdim=True)
        hi = torch.where(mask, cams, -inf).amax(dim=dims, keepdim=True)
        span = hi - lo
        # An image (or class) without present maps has lo = inf: give it zeros rather than NaN.
        lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
        span = torch.where(torch.isfinite(span), span, torch.zeros_like(span))
        out = (cams - lo) / span.clamp_min(tiny)
    return torch.where(mask, out, torch.zeros_like(out))


def multi_layer_gradcam(
    forward_with_features: ForwardWithFeatures,
    images: torch.Tensor,
    labels: torch.Tensor,
    layers: Sequence[str],
    *,
    normalise: Normalise = "global",
    out_size: tuple[int, int] | None = None,
    relu: bool = True,
) -> dict[str, torch.Tensor]:
    """Grad-CAMs of every present class of every image at several layers, one forward pass per batch.

    For layer activations ``A`` ``(B, K, h, w)`` and class ``c``: ``α[b, k] = mean_{i,j} ∂y[b, c]/∂A[b, k, i, j]``,
    ``cam[b, c] = ReLU(Σ_k α[b, k] · A[b, k])`` (no ReLU if ``relu=False``), upsampled bilinearly
    (``align_corners=False``, like ``cv2.resize``) to ``out_size``, classes absent from ``labels`` set to 0,
    then normalised (:func:`normalise_cams`).

    Cost: one forward of the batch and ``max_b |present_b|`` backwards (backward ``r`` differentiates, in
    every image at once, the logit of that image's ``r``-th present class; each backward yields the
    gradients of all ``layers``). This equals the per-image computation only when the images are
    independent in the forward pass, i.e. the network is in **eval mode** (BatchNorm running statistics,
    no dropout); the caller is responsible for ``model.eval()``.

    Args:
        forward_with_features: see :data:`ForwardWithFeatures` (e.g. :class:`HookedForward`).
        images: ``(B, 3, H, W)`` float, normalised as the network expects.
        labels: ``(B, C)`` multi-hot (values > 0.5 are present).
        layers: which activations to use (keys of the features dict).
        normalise: ``"global"`` (default, as the reference), ``"per_class"`` or ``"none"``.
        out_size: ``(H_out, W_out)``; default the images' ``(H, W)``.
        relu: ReLU on the weighted sum (Grad-CAM as published); ``False`` keeps signed maps (reference code).

    Returns:
        ``{layer: (B, C, H_out, W_out) float32}`` on the images' device, detached.

    Raises:
        ValueError: bad shapes, logits whose class count differs from ``labels``, a missing layer, an
            activation outside the autograd graph or one the logits do not depend on.
        RuntimeError: called under ``torch.inference_mode()`` (no graph can be built there).
    """
    if normalise not in _NORMALISE:
        raise ValueError(f"normalise must be one of {_NORMALISE}, got {normalise!r}")
    if isinstance(layers, str) or not list(layers):
        raise ValueError(f"layers must be a non-empty sequence of names, got {layers!r}")
    layers = list(layers)
    present = _check_inputs(images, labels)
    if torch.is_inference_mode_enabled():
        raise RuntimeError("multi_layer_gradcam needs autograd: call it outside torch.inference_mode()")
    size = tuple(images.shape[-2:]) if out_size is None else (int(out_size[0]), int(out_size[1]))
    batch, n_cls = present.shape

    with torch.enable_grad():
        # A leaf input that requires grad keeps every activation in the graph even when the layers
        # before it are frozen (ResNet38's conv1a/b2) or the caller froze all parameters.
        x = images.detach().requires_grad_(True)
        logits, features = forward_with_features(x)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"forward_with_features must return (B, C) logits with B = {batch}, got {shape}")
        if logits.shape[1] != n_cls:
            raise ValueError(f"the network gives {logits.shape[1]} class logits but labels have {n_cls} classes")
        acts = []
        for name in layers:
            if name not in features:
                raise ValueError(f"layer {name!r} is not among the network's features "
                                 f"(available: {', '.join(map(str, features))})")
            a = features[name]
            if not isinstance(a, torch.Tensor) or a.ndim != 4 or a.shape[0] != batch:
                raise ValueError(f"activation of layer {name!r} must be (B, K, h, w) with B = {batch}, got "
                                 f"{tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__}")
            if not a.requires_grad:
                raise ValueError(f"activation of layer {name!r} is not part of the autograd graph "
                                 "(detached, or computed under no_grad?)")
            acts.append(a)

        # Backward r takes, in every image, its r-th present class: y = Σ_b logits[b, c_b(r)]. Because image
        # b's logits depend on image b's activations only, ∂y/∂A[b] = ∂logits[b, c_b(r)]/∂A[b], so one
        # backward serves a different class in each image, and max_b |present_b| backwards (usually 1–3)
        # cover the batch instead of one per class present anywhere in it.
        rank = present.cumsum(dim=1) - 1
        n_rounds = int(present.sum(dim=1).max()) if batch else 0
        low = [a.new_zeros((batch, n_cls, *a.shape[-2:]), dtype=torch.float32) for a in acts]
        for r in range(n_rounds):
            pick = present & (rank == r)  # (B, C): at most one class per image
            rows = pick.any(dim=1).nonzero().flatten()
            cls = pick.to(torch.uint8).argmax(dim=1)[rows]
            target = (logits * pick.to(logits.dtype)).sum()
            grads = torch.autograd.grad(target, acts, retain_graph=r < n_rounds - 1, allow_unused=True)
            for j, (a, g) in enumerate(zip(acts, grads, strict=True)):
                if g is None:
                    raise ValueError(f"the logits do not depend on layer {layers[j]!r}: not a usable CAM layer")
                alpha = g.float().mean(dim=(2, 3))  # (B, K): channel weights (0 for images without an r-th class)
                # Weighted sum over the whole batch, then keep the picked rows: indexing the (h, w) maps is
                # much cheaper than copying the (R, K, h, w) activations of the picked images. In fp32 even
                # under a caller's bf16 autocast: a sum over K channels is where low precision would show.
                with torch.autocast(a.device.type, enabled=False):
                    cam = torch.einsum("bk,bkhw->bhw", alpha, a.detach().float())
                low[j][rows, cls] = cam[rows]
        del logits, features, acts, x

    out: dict[str, torch.Tensor] = {}
    for name, cam in zip(layers, low, strict=True):
        cam = cam.float()
        if relu:
            cam = F.relu(cam)  # at feature resolution, as Grad-CAM and monai.visualize.GradCAM do
        # Absent classes are all-zero maps here and stay exactly zero through the (linear) upsampling.
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
        out[name] = normalise_cams(cam, present, normalise, relu=relu)
    return out


# ------------------------------------------------------------------------------------ CAM → mask
def cams_to_mask(
    cams: torch.Tensor,
    background: torch.Tensor | None = None,
    background_index: int | None = None,
    *,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pseudo mask: per pixel the present class with the highest CAM; background pixels → ``background_index``.

    Rule:

    1. Candidates are the classes present in ``labels`` (``> 0.5``); without ``labels``, the classes whose
       map is non-zero somewhere in that image. Absent classes can never win, not even ties (the reference
       code zeroes absent maps and takes a plain argmax, so an absent class can win where present maps are 0).
    2. Ties go to the lowest class index (``torch.argmax`` order). With ``relu=True`` CAMs this decides the
       pixels where no present class has positive evidence.
    3. Where ``background`` is true the pixel gets ``background_index``, whatever the CAMs say (the
       reference appends a background score of 1.000001, above any normalised CAM, with the same effect).
       LUAD-HistoSeg: white glass, ``grey > 200`` (see
       :func:`monai_wsseg.wsss.patches.white_background`), index ``C``; BCSS-WSSS: white is
       fat, i.e. tissue, so no background (``background=None``).
    4. An image without any candidate class becomes all ``background_index``; without a background index
       that is an error.

    Args:
        cams: ``(B, C, H, W)`` class maps (any scale; only their order per pixel matters).
        background: ``(B, H, W)`` bool, or ``None``.
        background_index: label of background pixels; required when ``background`` is given.
        labels: ``(B, C)`` multi-hot, optional (see rule 1).

    Returns:
        ``(B, H, W)`` int64 labels in ``0..C-1`` plus ``background_index``.
    """
    if not isinstance(cams, torch.Tensor) or cams.ndim != 4:
        raise ValueError(f"cams must be (B, C, H, W), got "
                         f"{tuple(cams.shape) if isinstance(cams, torch.Tensor) else type(cams).__name__}")
    batch, n_cls, height, width = cams.shape
    if labels is not None:
        labels = torch.as_tensor(labels, device=cams.device)
        if labels.shape != (batch, n_cls):
            raise ValueError(f"labels must be (B, C) = {(batch, n_cls)}, got {tuple(labels.shape)}")
        present = labels > 0.5
    else:
        present = (cams != 0).flatten(2).any(dim=2)
    if background is not None:
        if background_index is None:
            raise ValueError("a background mask needs a background_index")
        background = torch.as_tensor(background, device=cams.device)
        if background.shape != (batch, height, width):
            raise ValueError(f"background must be (B, H, W) = {(batch, height, width)}, got {tuple(background.shape)}")
    empty = ~present.any(dim=1)
    if bool(empty.any()) and background_index is None:
        raise ValueError(f"images {empty.nonzero().flatten().tolist()} of the batch have no present class "
                         "and there is no background_index to give them")
    scores = cams.float().masked_fill(~present[:, :, None, None], float("-inf"))
    mask = scores.argmax(dim=1)
    if background_index is not None:
        fill = torch.full_like(mask, int(background_index))
        mask = torch.where(empty[:, None, None], fill, mask)
        if background is not None:
            mask = torch.where(background.bool(), fill, mask)
    return mask
