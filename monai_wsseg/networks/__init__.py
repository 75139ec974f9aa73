"""Networks (torch ``nn.Module``) and the loading of their trained weights.

* :mod:`.fcn` — a torchvision ResNet made fully convolutional (:class:`ResNetFCN`): paper A's network, and
  the dilated layers paper B's segmenter builds on;
* :mod:`.pda` — paper B's phase-1 classifier with Progressive Dropout Attention; :mod:`.resnet38` — its
  wide ResNet-38d backbone; :mod:`.cam` — batched multi-layer Grad-CAM and CAM → pseudo mask;
* :mod:`.deeplab` — DeepLabV3+, paper B's phase-2 segmenter; :mod:`.gate` — the classification gate;
* :mod:`.checkpoint` — weights from the checkpoint files the bundles write.

Names are imported on first use (:mod:`monai_wsseg.utils.lazy`): each module imports torch (and some
torchvision), so the package itself stays cheap to import.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "cam": ("ForwardWithFeatures", "HookedForward", "cams_to_mask", "check_layer_names", "multi_layer_gradcam",
            "normalise_cams"),
    "checkpoint": ("CheckpointError", "load_checkpoint", "load_weights", "read_state_dict", "state_dict_of"),
    "deeplab": ("ASPP", "DeepLabV3Plus"),
    "fcn": ("ResNetFCN",),
    "gate": ("GatedSegmenter", "apply_gate", "open_classes"),
    "pda": ("PDAClassifier", "class_activation_maps", "dropout_attention"),
    "resnet38": ("BLOCK_NAMES", "DEFAULT_OUT_LAYERS", "ResNet38d"),
})
