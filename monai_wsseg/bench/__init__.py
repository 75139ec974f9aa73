"""Benchmarks of the whole-slide engine, and the huge synthetic slide they run on.

* :mod:`.large_slide` — a huge pyramidal JPEG TIFF (e.g. 100,000 × 100,000 px) written tile by tile in a few
  MB of memory (:func:`make_large_slide`);
* :mod:`.memory` — peak resident memory of a process and its DataLoader workers, per phase (:class:`MemoryMonitor`);
* :mod:`.large_inference` — whole-slide inference on such a slide in bounded memory: time and peak memory per
  phase (:func:`run_benchmark`);
* :mod:`.inference` — one slide's inference as ratios: network alone, reading alone, end to end, patch mode and
  the model-zoo patch pipeline, and the chosen precision against fp32 (:func:`run_inference_benchmark`);
* :mod:`.training` — a bundle's training step as configured against the same steps on in-memory batches
  (:func:`run_training_benchmark`).

The scripts ``make_large_slide.py``, ``bench_large_slide.py``, ``bench_inference.py`` and ``bench_training.py``
are their command lines.
Names are imported on first use (:mod:`monai_wsseg.utils.lazy`), so ``import monai_wsseg.bench`` does not pay
for torch.
"""

from monai_wsseg.utils.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "inference": ("agreement", "fast_path", "model_only", "peer_pipeline", "read_only", "run_inference_benchmark"),
    "large_inference": ("TinyFCN", "benchmark_report", "run_benchmark", "tissue_coverage"),
    "large_slide": ("LargeSlide", "check_slide", "level_shapes", "make_large_slide", "make_textures",
                    "tissue_layout"),
    "memory": ("MemoryMonitor",),
    "training": ("batch_patches", "run_training_benchmark"),
})
