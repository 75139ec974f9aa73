"""Protocols that run a bundle many times and judge the outcome (``scripts/stability.py``).

Cheap to import: ``monai`` and ``torch`` are imported inside the functions that train or evaluate.
"""

from __future__ import annotations

from monai_wsseg.bundle.stability import run_seed, run_stability
from monai_wsseg.bundle.stability_protocol import (
    Floors,
    StabilityProtocol,
    check_overrides,
    load_protocol,
    parse_seeds,
)
from monai_wsseg.bundle.stability_results import (
    FIGURES,
    SeedResult,
    StabilityResults,
    check_floors,
    curve_figures,
    read_validation_curve,
)
from monai_wsseg.bundle.stability_tables import markdown_table, plot_curves, summarize, write_tables

__all__ = [
    "FIGURES", "Floors", "SeedResult", "StabilityProtocol", "StabilityResults", "check_floors",
    "check_overrides", "curve_figures", "load_protocol", "markdown_table", "parse_seeds", "plot_curves",
    "read_validation_curve", "run_seed", "run_stability", "summarize", "write_tables",
]
