#!/usr/bin/env bash
# Export a trained model for shipping: ./export.sh RUN_DIR_OR_CHECKPOINT OUT_DIR [--no-engine]
# e.g. OUT_DIR algorithm/resources/models/thick-slice (or thin-slice: the bundled models, routed by slice spacing).
# Writes OUT_DIR: config.json, model.pt, model.onnx,
# model.fp16.onnx, each checked against PyTorch; where TensorRT and a GPU are present also
# model-sm<CC>-trt<VERSION>.engine (+ .json sidecar, timing cache), checked against ONNX Runtime.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
exec python -m spider_tools.export "$@"
