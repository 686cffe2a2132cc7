# spider-segment inference container for grand-challenge. One file, two flavours (build.sh picks):
#
# GPU (default; what grand-challenge runs: NVIDIA T4, compute capability 7.5, FP16)
#   base image    nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04  CUDA 12.6 runtime, cuDNN 9, Python 3.12
#   ONNX Runtime  onnxruntime-gpu 1.23.2   PyPI build for CUDA 12.x + cuDNN 9.x
#   TensorRT      tensorrt-cu12 10.13.3.9  CUDA 12.x (TensorRT 11 needs CUDA 13 and a newer driver)
#   GPU buffers   cuda-bindings 12.9.4     NVIDIA's CUDA runtime bindings (no torch in this image)
#   Host driver: >= 525 (CUDA 12 minor-version compatibility). A TensorRT engine runs only on the
#   GPU architecture and TensorRT version that built it: build it with this image on a T4 (README,
#   the container, step 4); without a matching engine the algorithm logs why and runs
#   ONNX Runtime on CUDA.
# CPU (./build.sh --cpu; ONNX Runtime on the CPU, buildable without a GPU or a registry)
#   BASE_IMAGE a local Debian 12 image with python3 and python3-venv (made by debootstrap),
#   RUNTIME_PACKAGES onnxruntime, PIP_SOURCE "--no-index --find-links /wheels": the wheels are
#   downloaded on the host into build/wheels and the build runs with --network none.
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG RUNTIME_PACKAGES="onnxruntime-gpu==1.23.2 tensorrt-cu12==10.13.3.9 cuda-bindings==12.9.4"
ARG RUNTIME_CHECK="import onnxruntime, tensorrt, cuda.bindings.runtime"
ARG PIP_SOURCE=""

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    ORT_DISABLE_TELEMETRY=1

# ORT_DISABLE_TELEMETRY: no telemetry from ONNX Runtime (the container has no network), and no
# warning on every start that it cannot persist its device id in the read-only home.
# The CUDA base has no Python; the CPU base brings python3-venv (and its build has no network).
# hadolint ignore=DL3008
RUN if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

# The package list is copied, not bound: a change to it must invalidate the build cache.
COPY requirements-image.txt /opt/requirements-image.txt
# hadolint ignore=SC2086
RUN --mount=type=bind,source=build/wheels,target=/wheels \
    pip install ${PIP_SOURCE} -r /opt/requirements-image.txt ${RUNTIME_PACKAGES} \
    && python -c "${RUNTIME_CHECK}"

RUN groupadd --system --gid 10001 user \
    && useradd --system --uid 10001 --gid user --create-home user \
    && mkdir -p /opt/app /input /output /opt/ml/model \
    && chown user:user /output /opt/ml/model

WORKDIR /opt/app
# The models (config.json, model.onnx, model.fp16.onnx, TensorRT engines) are baked in under
# algorithm/resources/models/<name> (thin-slice and thick-slice, chosen per series by its slice
# spacing). The entry point picks --model, else $SPIDER_MODEL_DIR, else /opt/ml/model when it
# holds a model (a model tarball uploaded to grand-challenge is extracted there), else the
# baked-in models; so SPIDER_MODEL_DIR is deliberately left unset.
COPY --chown=10001:10001 algorithm /opt/app/algorithm
ENV MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
ENTRYPOINT ["python", "-m", "algorithm"]
