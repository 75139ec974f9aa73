#!/usr/bin/env bash
# The WSSS bundle's four phases on the demo patch set with the CPU overlays, each phase timed.
#   bash scripts/wsss_demo.sh [DATASET_DIR] [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-demo/patches}
OUT=${2:-bundles/wsss_tissue_segmentation/runs/latest}
B=bundles/wsss_tissue_segmentation
C=$B/configs
PY=${PYTHON:-.venv/bin/python}
phase() {  # phase NAME RUN_ID CONFIGS... -- ARGS...
    local name=$1 run_id=$2; shift 2
    local files=() ; while [[ $1 != -- ]]; do files+=("'$C/$1'"); shift; done; shift
    local list; list=$(IFS=,; echo "[${files[*]}]")
    local t0=$SECONDS
    "$PY" -m monai.bundle run "$run_id" --bundle_root "$B" --config_file "$list" --dataset_dir "$DATA" --output_dir "$OUT" "$@"
    echo "phase $name: $((SECONDS - t0)) s" | tee -a "$OUT/timing.txt"
}
mkdir -p "$OUT" && : > "$OUT/timing.txt"
phase classifier training train_cls.json cpu.json --
phase pseudo_masks run pseudo_masks.json -- --width 0.125
phase segmenter training train_seg.json cpu_seg.json --
phase evaluate run evaluate.json cpu_seg.json -- --width 0.125
echo "total: $SECONDS s" | tee -a "$OUT/timing.txt"
cat "$OUT/evaluation/evaluation.md"
