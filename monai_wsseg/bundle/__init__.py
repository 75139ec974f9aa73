"""Running and checking the bundles from Python.

* :mod:`.runs` — a bundle workflow run in process (what the scripts and the stability protocol call);
* :mod:`.checks` — the model-zoo checks: metadata against the schema shipped in this package
  (``metadata_schema.json``, found installed too), required files, changelog, ``verify_net_in_out``;
* :mod:`.definitions` — what the readers of the run definitions in ``configs/`` share (one-line errors
  naming the file and the key, paths relative to ``root``, config files per profile);
* protocols that run a bundle many times and judge the outcome (``scripts/stability.py``): the MIL
  bundle's (:mod:`.stability`) and the WSSS bundle's (:mod:`.stability_wsss`).

Cheap to import: ``monai`` and ``torch`` are imported inside the functions that train or evaluate.
"""

from __future__ import annotations

from monai_wsseg.bundle.stability import (
    read_or_run,
    run_seed,
    run_stability,
    same_weights,
    seed_study,
)
from monai_wsseg.bundle.stability_protocol import (
    Floors,
    FloorsBase,
    ProtocolBase,
    StabilityProtocol,
    check_overrides,
    load_protocol,
    parse_seeds,
)
from monai_wsseg.bundle.stability_results import (
    FIGURES,
    MIL_SPEC,
    FigureSpec,
    SeedResult,
    StabilityResults,
    check_floors,
    curve_figures,
    merge_curves,
    read_validation_curve,
)
from monai_wsseg.bundle.stability_tables import (
    markdown_table,
    plot_curves,
    summarize,
    write_tables,
)
from monai_wsseg.bundle.stability_wsss import WSSSFloors, WSSSProtocol, wsss_spec

__all__ = [
    "FIGURES", "MIL_SPEC", "FigureSpec", "Floors", "FloorsBase", "ProtocolBase", "SeedResult", "StabilityProtocol",
    "StabilityResults", "WSSSFloors", "WSSSProtocol", "check_floors", "check_overrides", "curve_figures",
    "load_protocol", "markdown_table", "merge_curves", "parse_seeds", "plot_curves", "read_or_run",
    "read_validation_curve", "run_seed", "run_stability", "same_weights", "seed_study", "summarize", "write_tables",
    "wsss_spec",
]
