#!/usr/bin/env bash
# GPU speed benchmark, for a machine with an NVIDIA GPU and PyTorch (e.g. the borrowed H200):
#   scripts/gpu_benchmark.sh
# Synthesizes the three SPIDER-geometry volumes (T2, T1, T2-SPACE), then times PyTorch FP32 and
# FP16, ONNX Runtime CUDA and TensorRT where present (unavailable ones are listed with the reason)
# per stage, and the whole spider-segment process on the GPU. Writes benchmark_gpu.{txt,json,png}
# and env.txt under $OUT (default ./out).
# Settings (environment): MODEL (default algorithm/resources/models/thin-slice; an untrained model of the
# default architecture when it holds none: speed does not depend on weights), VOLUMES
# (default t2,t1,t2_SPACE), REPEATS (3), WARMUP (1), DEVICE (cuda).
# Missing SimpleITK / cc3d are installed from wheels carried in .whl/ (see the device notes).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./out}"
MODEL="${MODEL:-algorithm/resources/models/thin-slice}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

# shellcheck source=scripts/gpu_env.sh
. scripts/gpu_env.sh

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
    python3 -c "import platform, torch; print('python', platform.python_version(), '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())"
    python3 -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())" || echo "onnxruntime: not installed"
    python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>/dev/null || echo "tensorrt: not installed"
    echo "CPUs: $(nproc)"
} | tee "$OUT/env.txt"

model_args=(--model "$MODEL")
if [[ ! -f "$MODEL/config.json" ]]; then
    echo "no model in $MODEL: benchmarking an untrained model of the default architecture"
    model_args=(--random-model)
fi

python3 -m spider_tools.benchmark "${model_args[@]}" \
    --volumes "${VOLUMES:-t2,t1,t2_SPACE}" \
    --backend torch,onnxruntime,tensorrt --device "${DEVICE:-cuda}" --precision all \
    --repeats "${REPEATS:-3}" --warmup "${WARMUP:-1}" \
    --json "$OUT/benchmark_gpu.json" --plot "$OUT/benchmark_gpu.png" 2>&1 | tee "$OUT/benchmark_gpu.txt"
