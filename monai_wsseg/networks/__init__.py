"""Networks (torch ``nn.Module``) both methods share, and the loading of their trained weights.

* :mod:`.fcn` — a torchvision ResNet made fully convolutional (:class:`ResNetFCN`): paper A's network, and
  the dilated layers paper B's segmenter builds on (:func:`~monai_wsseg.networks.fcn.dilate_basic_layer`);
* :mod:`.checkpoint` — weights from the checkpoint files the bundles write; :mod:`.pretrained` — ImageNet
  weights of the backbones by name (``pretrained: "imagenet"``).

Paper B's own networks (ResNet-38d, the PDA classifier, Grad-CAM, DeepLabV3+ and the gate) live with their
method, in :mod:`monai_wsseg.wsss`. Names are imported on first use (:mod:`monai_wsseg.utils.lazy`): each
module imports torch (and some torchvision), so the package itself stays cheap to import.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "checkpoint": ("CheckpointError", "load_checkpoint", "load_weights", "read_state_dict", "state_dict_of"),
    "fcn": ("ResNetFCN",),
    "pretrained": ("PRETRAINED_CHOICES", "imagenet_cache_path", "imagenet_url", "resolve_pretrained"),
})
