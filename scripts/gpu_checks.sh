#!/usr/bin/env bash
# The one prepared run for a borrowed GPU machine: the inference benchmark (scripts/gpu_benchmark.sh)
# and the training throughput with and without mixed precision (python -m train.throughput).
# Everything lands under $OUT (default ./out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./out}"
export OUT PYTHONUNBUFFERED=1
mkdir -p "$OUT"
for batch in 8 32; do
    python3 -m train.throughput --device cuda --steps 30 --batch-size "$batch" --json "$OUT/train_throughput_b$batch.json"
done 2>&1 | tee "$OUT/train_throughput.txt"
scripts/gpu_benchmark.sh
