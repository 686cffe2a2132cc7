#!/usr/bin/env bash
# The one prepared run for a borrowed GPU machine: the inference benchmark (scripts/gpu_benchmark.sh),
# the predict stage on the GPU against batches built on the host (scripts/ab_predict.py, PyTorch:
# the device machine's ONNX Runtime has no CUDA provider), and the training throughput with and
# without mixed precision, and for the contrast mix with and without worker processes (python -m train.throughput).
# Everything lands under $OUT (default ./out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./out}"
export OUT PYTHONUNBUFFERED=1
mkdir -p "$OUT"
# shellcheck source=scripts/gpu_env.sh
. scripts/gpu_env.sh
{
    for batch in 8 32; do
        python3 -m train.throughput --device cuda --steps 30 --batch-size "$batch" --json "$OUT/train_throughput_b$batch.json"
    done
    for workers in 0 12; do  # the contrast mix, slices rendered in the training process or in 12 others
        python3 -m train.throughput --device cuda --steps 30 --batch-size 32 --config train/configs/contrast_ft2.json \
            --workers "$workers" --json "$OUT/train_throughput_contrast_w$workers.json"
    done
} 2>&1 | tee "$OUT/train_throughput.txt"
scripts/gpu_benchmark.sh
TQDM_DISABLE=1 python3 scripts/ab_predict.py --synthetic t2,t1,t2_SPACE \
    --backend torch --device cuda --repeats 3 2>&1 | tee "$OUT/ab_predict_torch_cuda.txt"
