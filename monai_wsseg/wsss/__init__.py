"""Paper B (WSSS tissue segmentation from patch labels): all of the method in one package.

* :mod:`.patches` — the patch sets (LUAD-HistoSeg, BCSS-WSSS; :class:`PatchClassificationDataset`,
  :class:`PatchSegmentationDataset`, :class:`PseudoMaskDataset`), patch and mask I/O, white background;
  :mod:`.bcss` — BCSS regions of interest cut into a BCSS-WSSS patch set (:func:`prepare_bcss`);
* :mod:`.transforms` — one random flip / quarter turn for an image and its masks (:class:`RandFlipRot90d`);
* :mod:`.resnet38` — the wide ResNet-38d backbone (:class:`ResNet38d`);
* :mod:`.pda` — the phase-1 classifier with Progressive Dropout Attention (:class:`PDAClassifier`);
  :mod:`.pda_schedule` — its per-epoch μ schedule (:class:`PDAScheduleHandler`);
* :mod:`.cam` — batched multi-layer Grad-CAM and CAM → pseudo mask (:func:`multi_layer_gradcam`);
  :mod:`.pseudo_masks` — the job that writes them for every training patch (:class:`PseudoMaskJob`);
* :mod:`.deeplab` — the phase-2 segmenter (:class:`DeepLabV3Plus`); :mod:`.gate` — the classification
  gate (:class:`GatedSegmenter`);
* :mod:`.loss` — the multi-layer pseudo-mask loss (:class:`MultiLayerPseudoLoss`);
* :mod:`.training` — the segmenter's training glue: its batches and the validation MIoU
  (:class:`TissueMIoU`, an Ignite metric over :mod:`monai_wsseg.metrics.tissue`);
* :mod:`.evaluation` — the ``evaluate.json`` tables: Grad-CAM per layer and the segmenter, gated or not
  (:class:`WSSSEvaluation`);
* :mod:`.inference` — the ``inference.json`` run: patches or whole slides (:func:`run_inference`);
* :mod:`.ablation` — the paper's Table III, one bundle run per model of a run definition
  (``configs/ablation/wsss_table3.json``, :func:`load_ablation`, :func:`run_ablation`);
  :mod:`.ablation_tables` — its ``ablation.csv`` / ``ablation.md`` (:class:`RunResult`, :func:`read_table`).

Shared with the MIL method and kept outside: the dilated ResNet layers and checkpoint loading
(:mod:`monai_wsseg.networks`), the WSI engine (:mod:`monai_wsseg.inference`), palettes
(:mod:`monai_wsseg.io.palettes`), the numpy tissue scores (:mod:`monai_wsseg.metrics.tissue`) and the generic
Ignite pieces (:mod:`monai_wsseg.engines`). Names are imported on first use (:mod:`monai_wsseg.utils.lazy`),
so ``import monai_wsseg.wsss`` does not pay for torch or MONAI.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ablation": ("AblationDefinition", "Row", "Run", "check_ablation_overrides", "load_ablation", "parse_rows",
                 "quick_patches", "run_ablation", "run_one", "runs_for"),
    "ablation_tables": ("RunResult", "read_table", "table_rows"),
    "bcss": ("CutSettings", "assign_splits", "code_lut", "parse_class_codes", "prepare_bcss"),
    "cam": ("ForwardWithFeatures", "HookedForward", "cams_to_mask", "check_layer_names", "multi_layer_gradcam",
            "normalise_cams"),
    "deeplab": ("ASPP", "DeepLabV3Plus"),
    "evaluation": ("WSSSEvaluation",),
    "gate": ("GatedSegmenter", "apply_gate", "open_classes"),
    "inference": ("inference_dataset", "predict_patch_folder", "run_inference"),
    "loss": ("MultiLayerPseudoLoss",),
    "patches": ("PatchClassificationDataset", "PatchSegmentationDataset", "PseudoMaskDataset", "parse_label",
                "read_index_mask", "read_rgb", "white_background", "write_rgb_png"),
    "pda": ("PDAClassifier", "class_activation_maps", "dropout_attention"),
    "pda_schedule": ("PDAScheduleHandler", "mu_schedule", "unwrap_network"),
    "pseudo_masks": ("PseudoMaskJob", "mask_path", "write_pseudo_masks"),
    "resnet38": ("BLOCK_NAMES", "DEFAULT_OUT_LAYERS", "ResNet38d"),
    "training": ("TissueMIoU", "mask_batch", "pseudo_batch"),
    "transforms": ("RandFlipRot90d",),
})
