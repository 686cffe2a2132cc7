"""What every inference backend shares: the model file names, the ``Backend`` interface and the
exception that says a backend cannot run here. ``backends`` (the loader) and ``tensorrt_backend``
(one backend) both import this module, and neither imports the other at module level."""

from __future__ import annotations

from typing import Protocol

import numpy as np

WEIGHTS_NAME = "model.pt"
ONNX_NAME = "model.onnx"
FP16_ONNX_NAME = "model.fp16.onnx"  # FP16 graph with float32 I/O: ONNX Runtime on CUDA, strongly typed TensorRT (>= 11)
CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"  # ONNX Runtime's


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (library, file or device missing)."""


class Backend(Protocol):
    name: str  # e.g. "onnxruntime-cpu"
    device: str  # "cpu" or "cuda"

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...
