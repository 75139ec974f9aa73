"""The inference benchmark runs end to end on a small pyramid and reports every figure (no timing asserts)."""

from __future__ import annotations

import json

import numpy as np

from monai_wsseg.wsi.tiff_writer import write_pyramidal_tiff
from tests.conftest import load_script, smooth_rgb


def test_bench_reports_all_figures(tmp_path):
    image = smooth_rgb(512, 4096, seed=1)
    image[:, 768:] = 245  # mostly glass
    slide = tmp_path / "wide.tif"
    write_pyramidal_tiff(slide, image, 0.5)  # levels down to 256 px: the peer finds its 16x mask level
    out = tmp_path / "bench.json"
    result = load_script("bench_inference").main([
        "--slide", str(slide), "--backbone", "resnet18", "--tile", "256", "--halo", "32",
        "--workers", "0", "--model-windows", "2", "--peer-patches", "4", "--json", str(out),
    ])
    saved = json.loads(out.read_text())
    for key in ("a_model_mpx_s", "b_read_mpx_s", "c_end_to_end_mpx_s", "ratio_c_over_a", "d_peak_rss_mb",
                "e_time_ratio_patch_over_fcn", "f_time_ratio_peer_over_ours", "g_fast_speedup", "g_fp32_model_mpx_s"):
        assert np.isfinite(saved[key]) and saved[key] > 0, key
    assert saved["tiles"] == result["tiles"] < 4096 * 512 // 256**2 // 2  # glass tiles were not planned
    assert saved["f_peer"]["patches_total"] > 700  # one patch per 16 px cell of tissue
    assert saved["e_agreement"]["cells_compared"] > 0
    assert 0 <= saved["g_fast_max_abs_diff"] < 0.05 and saved["precision"]["requested"] == "auto"
    assert saved["weights"] == "random"
