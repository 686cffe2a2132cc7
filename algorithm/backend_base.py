"""What every inference backend shares: the backend and device names, the model file names, the ``Backend`` interface, the
exception that says a backend cannot run here, how an ONNX Runtime session is made, how the
small helper graphs beside the model (class head, context) are written, and how an error is told
in one line. ``backends`` (the loader) and ``tensorrt_backend`` (one backend) both
import this module, and neither imports the other at module level; the CLI imports it at start,
so it imports nothing heavy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino", "torch")
DEVICES = ("auto", "cpu", "cuda")
WEIGHTS_NAME = "model.pt"
ONNX_NAME = "model.onnx"
FP16_ONNX_NAME = "model.fp16.onnx"  # FP16 graph with float32 I/O: ONNX Runtime on CUDA, strongly typed TensorRT (>= 11)
CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"  # ONNX Runtime's
# cuDNN's heuristic picks each convolution's algorithm at once; the default, EXHAUSTIVE, times every
# algorithm for every new input shape, on every start of the container
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (library, file or device missing)."""


class Backend(Protocol):
    name: str  # e.g. "onnxruntime-cpu"
    device: str  # "cpu" or "cuda"

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def ort_session(ort, path: Path, providers: list[str], spin: bool = True):
    """An ONNX Runtime session of ``path`` on ``providers`` (CUDA with ``CUDA_OPTIONS``), quiet below errors. ``spin=False``:
    its threads sleep between calls instead of spin-waiting, so that they leave the cores to
    another session that runs in between."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=[(p, CUDA_OPTIONS) if p == CUDA_PROVIDER else p for p in providers])


def error_line(err: BaseException) -> str:
    """An exception in one line for a log: its type and the first line of its message."""
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def write_graph(graph, path: Path, opset: int = 17) -> None:
    """Save an ONNX GraphProto as a checked model at ``path``, readable by ONNX Runtime >= 1.14
    (needs the ``onnx`` package: a development tool)."""
    from onnx import checker, helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="spider-segment")
    model.ir_version = 8
    checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    print(f"wrote {path}")
