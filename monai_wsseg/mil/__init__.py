"""Paper A (MIL tumor segmentation from slide labels): all of the method in one package.

* :mod:`.bags` — one bag of tissue patches per slide and epoch (:class:`SlideBagDataset`, :func:`collate_bags`);
* :mod:`.transforms` — per-patch augmentation and standardisation of a bag (:func:`bag_transform`);
* :mod:`.sampling` — which bags share a training step (:class:`BagStepSampler`);
* :mod:`.loss` — the top-α / bottom-β proxy-label loss (:class:`TopKBottomKMILLoss`);
* :mod:`.warmup` — the slide-label warm-up before the proxy labels (:class:`ProxyWarmup`);
* :mod:`.trainer` — the MONAI trainer over bags (:class:`MILTrainer`) and the bundle's training helpers;
* :mod:`.validation` — whole-slide validation maps and their AUC (:class:`SlideMapEvaluator`, :class:`TumorAUC`);
* :mod:`.selection` — the checkpoint choice, with or without masks (:func:`key_metric`, :class:`SlideLabelScore`);
* :mod:`.evaluation` — the ``evaluate.json`` component: threshold on validation, figures on test
  (:class:`TumorMapEvaluation`);
* :mod:`.sweep` — the paper's (α, β) benchmark, one bundle run per configuration of a run definition
  (``configs/sweep/alpha_beta.json``, :func:`load_sweep`, :func:`run_sweep`); :mod:`.sweep_tables` — its
  ``sweep.csv`` / ``sweep.md`` / ``sweep.png`` (:class:`ConfigResult`, :func:`plot_matrix`).

The network (:class:`~monai_wsseg.networks.fcn.ResNetFCN`) stays in :mod:`monai_wsseg.networks`: the WSSS
segmenter builds on its dilated layers. Names are imported on first use (:mod:`monai_wsseg.utils.lazy`),
so ``import monai_wsseg.mil.loss`` does not pay for MONAI.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "bags": ("SlideBagDataset", "collate_bags"),
    "evaluation": ("CSV_COLUMNS", "DEFAULT_THRESHOLD", "TumorMapEvaluation"),
    "loss": ("TopKBottomKMILLoss", "check_alpha_beta"),
    "sampling": ("BagStepSampler",),
    "selection": ("SlideLabelScore", "additional_metrics", "key_metric"),
    "sweep": ("SWEEP_KEYS", "SweepDefinition", "check_applies", "check_sweep_overrides", "config_name",
              "evaluate_config", "load_sweep", "parse_configs", "quick_cohort", "run_config", "run_sweep",
              "train_config"),
    "sweep_tables": ("ConfigResult", "in_framework", "matrices", "plot_matrix"),
    "trainer": ("MILTrainer", "instance_logits", "mil_slides"),
    "transforms": ("BagStandardize", "RandBagAugment", "bag_transform", "gaussian_blur", "hue_matrices"),
    "validation": ("SlideMapEvaluator", "TumorAUC", "slide_map_targets"),
    "warmup": ("ProxyWarmup",),
})
