# spider-segment inference container for grand-challenge (NVIDIA T4: compute capability 7.5, FP16).
#
# Version pairing (all CUDA 12 / cuDNN 9, all supporting Turing sm_75):
#   base image    nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04  CUDA 12.6 runtime, cuDNN 9, Python 3.12
#   ONNX Runtime  onnxruntime-gpu 1.23.2   PyPI build for CUDA 12.x + cuDNN 9.x
#   TensorRT      tensorrt-cu12 10.13.3.9  CUDA 12.x (TensorRT 11 needs CUDA 13 and a newer driver)
#   GPU buffers   cuda-bindings 12.9.4     NVIDIA's CUDA runtime bindings (no torch in this image)
# Host driver: >= 525 (CUDA 12 minor-version compatibility).
# A TensorRT engine runs only on the GPU architecture and TensorRT version that built it: build
# it with this image on a T4 (README, "Building the TensorRT engine"); without a matching engine
# the algorithm logs why and runs ONNX Runtime on CUDA.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

RUN pip install \
        numpy==2.4.6 \
        scipy==1.17.1 \
        SimpleITK==2.5.7 \
        connected-components-3d==4.1.1 \
        tqdm==4.70.1 \
        matplotlib==3.11.2 \
        onnxruntime-gpu==1.23.2 \
        tensorrt-cu12==10.13.3.9 \
        cuda-bindings==12.9.4 \
    && python -c "import onnxruntime, tensorrt, cuda.bindings.runtime"

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
