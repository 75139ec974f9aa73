#!/usr/bin/env bash
# One GPU check of the whole project, for a lent H100/H200: about 8 minutes, one table at the end.
#
# Steps (each under its own time limit; a failed or timed-out step is reported and the next one runs):
#   data       a small synthetic cohort (6 slides of 4096² px, 60 patches) and a 16384² slide
#   inference  scripts/bench_inference.py on CUDA, ResNet50 FCN: model only, end to end, ratio, the model-zoo
#              patch pipeline, precision fast path vs fp32, peak GPU memory
#   inference_nvjpeg  the same end to end with JPEG tiles decoded on the GPU (WSIInferer(decode="device"))
#   large      scripts/bench_large_slide.py: an 80,000² synthetic slide made and inferred end to end
#   readers    cuCIM, tifffile and OpenSlide read the same regions: max |Δ| (python -m monai_wsseg.bench.reader_check)
#   train_mil  scripts/bench_training.py, MIL paper profile (train.json, no CPU overlay): AMP steps, ratio
#   train_wsss the same for the WSSS classifier (train_cls.json)
#   ddp        torchrun, one process per GPU: NCCL all-reduce and DDP steps (python -m monai_wsseg.bench.ddp_check)
# Then python -m monai_wsseg.bench.gpu_report prints the table and writes OUT/gpu_check.json.
#
# Usage: bash scripts/gpu_check.sh [OUT]      (default OUT: $OUT or runs/gpu_check)
# Env:   PYTHON (default: python3), GPU_CHECK_LARGE (width of the large slide, default 80000; 0 skips it)
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$ROOT/runs/gpu_check}}"
PY="${PYTHON:-python3}"
LARGE="${GPU_CHECK_LARGE:-80000}"
DATA="$OUT_DIR/data"
"$PY" -c "import torch, monai_wsseg" 2>/dev/null || {
    echo "gpu_check: $PY cannot import torch and monai_wsseg; set PYTHON (e.g. PYTHON=.venv/bin/python) or PYTHONPATH" >&2
    exit 2
}
mkdir -p "$OUT_DIR" "$DATA"
: > "$OUT_DIR/steps.tsv"
cd "$ROOT" || exit 1

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, record exit status and time
    local name="$1" limit="$2"; shift 2
    local start rc
    start=$(date +%s)
    echo "== $name (limit ${limit}s)" >&2
    timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" >> "$OUT_DIR/steps.tsv"
    [ "$rc" -eq 0 ] || { echo "   $name: exit $rc (last lines of $OUT_DIR/$name.log:)" >&2; tail -3 "$OUT_DIR/$name.log" >&2; }
}

step data 120 "$PY" - "$DATA" <<'EOF'
import sys
from pathlib import Path
from monai_wsseg.bench.large_slide import make_large_slide
from monai_wsseg.synthetic.generator import make_cohort, make_patch_set
out = Path(sys.argv[1])
make_cohort(out / "cohort", n_tumor=3, n_normal=3, size=(4096, 4096), seed=0,
            splits=["train", "train", "val", "train", "train", "val"])
make_patch_set(out / "patches", n_train=60, n_val=12, n_test=12, seed=0)
make_large_slide(out / "slide16k.tif", 16384, 16384, tissue_fraction=0.4, seed=0)
EOF

step inference 150 "$PY" scripts/bench_inference.py --slide "$DATA/slide16k.tif" --device cuda --backbone resnet50 \
    --batch-size 8 --workers 8 --model-windows 16 --peer-patches 512 --peer-reader openslide --precision auto \
    --json "$OUT_DIR/inference.json"

step inference_nvjpeg 90 "$PY" scripts/bench_inference.py --slide "$DATA/slide16k.tif" --device cuda \
    --backbone resnet50 --batch-size 8 --workers 0 --model-windows 16 --peer-patches 0 --skip-patch-mode \
    --skip-fast-path --precision auto --decode device --json "$OUT_DIR/inference_nvjpeg.json"

if [ "$LARGE" -gt 0 ]; then
    step large 200 "$PY" scripts/bench_large_slide.py --size "$LARGE" --tissue 0.3 --workers 8 --delete-slide \
        --slide "$DATA/large.tif" --json "$OUT_DIR/large.json"
fi

step readers 60 "$PY" -m monai_wsseg.bench.reader_check --slide "$DATA/slide16k.tif" \
    --backends openslide cucim tifffile --json "$OUT_DIR/readers.json"

step train_mil 120 "$PY" scripts/bench_training.py --bundle mil_tumor_segmentation --dataset_dir "$DATA/cohort" \
    --device cuda --set num_workers=8 --steps 4 --json "$OUT_DIR/train_mil.json"

step train_wsss 90 "$PY" scripts/bench_training.py --bundle wsss_tissue_segmentation --dataset_dir "$DATA/patches" \
    --device cuda --set num_workers=8 --steps 6 --json "$OUT_DIR/train_wsss.json"

GPUS=$("$PY" -c "import torch; print(max(1, torch.cuda.device_count()))" 2>/dev/null || echo 1)
step ddp 90 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m monai_wsseg.bench.ddp_check \
    --json "$OUT_DIR/ddp.json"

"$PY" -m monai_wsseg.bench.gpu_report "$OUT_DIR"
