#!/usr/bin/env bash
# Everything that needs a GPU, in one run of about 6 minutes on an H200 (a lent GPU has 15 minutes
# for a whole session): the CUDA tests, SAM vs SAMA vs Meta's SAM per image and per prompt
# (ViT-B and ViT-H, float32 and bf16), Attention's forms and the CUDA graphs against their
# textbook forms, and train.py's steps (ViT-L, batch 4 per task, bf16) on DIS-sized JPEGs.
#
#     bash tests/gpu_check.sh [OUT]      # OUT (default gpu-check/) receives one log per stage
#
# Meta's package (segment-anything, pure Python) must be importable: pip install -r
# requirements-dev.txt, or PYTHONPATH to an unpacked wheel. Each stage has its own time limit, so
# one that hangs leaves the others their time; the card and the software head every log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

stage() {  # stage NAME SECONDS COMMAND...: run it, its output to the screen and to OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date +%T), limit ${limit} s): $*" | tee "$OUT/$name.log"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    echo "=== $name: exit ${PIPESTATUS[0]}" | tee -a "$OUT/$name.log"
}

stage card 30 "$PY" -c "import torch, platform; print(torch.cuda.get_device_name(), '|',
torch.__version__, 'CUDA', torch.version.cuda, '| Python', platform.python_version())"
stage test_cuda 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
stage bench_bf16 90 "$PY" -m benchmarks.benchmark --variants vit_b vit_h --device cuda --bf16 \
    --meta --reps 10
stage bench_fp32 90 "$PY" -m benchmarks.benchmark --variants vit_b vit_h --device cuda --meta \
    --reps 5
stage optimisations 60 "$PY" -m benchmarks.benchmark --optimisations --variants vit_h \
    --device cuda --bf16 --reps 5
stage train 120 "$PY" -m benchmarks.benchmark --train --variants vit_l --device cuda --steps 40
