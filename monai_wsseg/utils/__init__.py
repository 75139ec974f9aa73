"""Small helpers the whole package shares, one concern per module.

* :mod:`monai_wsseg.utils.atomic` — write a file so that its final name never holds a partial file.
* :mod:`monai_wsseg.utils.cli` — what every script does alike: refuse bad input in one line, write JSON.
* :mod:`monai_wsseg.utils.lazy` — package faces whose names are imported on first use.
* :mod:`monai_wsseg.utils.output_dir` — check an output folder (writable, free space) before any work.
* :mod:`monai_wsseg.utils.precision` — the ``precision`` setting (fp32 / bf16 / fp16 autocast, channels-last).
* :mod:`monai_wsseg.utils.seeding` — a transform re-seeded per item (augmentation independent of workers).

Nothing is imported here, so ``import monai_wsseg.utils.atomic`` costs only that module (standard library).
"""

__all__: list[str] = []  # import the named modules themselves
