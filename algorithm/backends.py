"""Inference backends behind one interface: a callable from an input batch (N, C, H, W) float32
to logits (N, K, H, W) float32. Heavy libraries are imported only by the backend that needs them,
so a container running ONNX Runtime or TensorRT needs no torch."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from algorithm.backend_base import BACKENDS, CPU_PROVIDER, CUDA_PROVIDER, DEVICES, FP16_ONNX_NAME, ONNX_NAME, WEIGHTS_NAME, Backend, BackendUnavailable, error_line, ort_session
from algorithm.config import Config

__all__ = ["BACKENDS", "DEVICES", "FP16_ONNX_NAME", "ONNX_NAME", "WEIGHTS_NAME", "Backend", "BackendUnavailable",
           "OnnxBackend", "OpenVinoBackend", "TorchBackend", "load_backend", "torch_backend"]

log = logging.getLogger("algorithm")

# what ``auto`` tries, in order (None: the device asked for): the GPU first, then OpenVINO before
# ONNX Runtime on the CPU (where it is installed: about 3x faster there on CPUs with bf16)
AUTO_ORDER = (("tensorrt", None), ("onnxruntime", "cuda"), ("openvino", "cpu"), ("onnxruntime", "cpu"), ("torch", None))


class TorchBackend:
    """A PyTorch module in eval mode; FP16 autocast and channels_last on CUDA."""

    def __init__(self, model, device: str):
        import torch

        self.torch, self.device = torch, device
        self.fp16 = device == "cuda"  # FP16 autocast; the benchmark sets False to measure FP32 on CUDA
        self.model = model.to(device).eval()
        if device == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.name = f"torch-{device}" + ("-fp16" if device == "cuda" else "")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.forward(self.torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)).cpu().numpy()

    def forward(self, x):
        """Input tensor (N, C, H, W) on the backend's device -> float32 logits tensor there."""
        torch = self.torch
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self.fp16):
            if self.device == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float()


def torch_backend(model_dir: Path, config: Config, device: str) -> TorchBackend:
    """Load ``model.pt`` from ``model_dir`` into the U-Net the config describes."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("torch is not installed") from None
    from algorithm.model import build_model, load_weights

    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise BackendUnavailable(f"no {WEIGHTS_NAME} in {model_dir}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("CUDA is not available to torch")
    model = build_model(config)
    model.load_state_dict(load_weights(weights))
    return TorchBackend(model, device)


class OnnxBackend:
    """ONNX Runtime. On CUDA it runs the FP16 graph (``model.fp16.onnx``, checked against PyTorch
    at export) where the model folder has one, else the FP32 graph; on the CPU the FP32 graph.
    ``name`` and ``device`` say what the session really runs on: where the CUDA execution provider
    fails to load, ONNX Runtime silently uses the CPU, and so does this backend, saying so."""

    def __init__(self, model_dir: Path, config: Config, device: str):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed") from None
        fp32, fp16 = model_dir / ONNX_NAME, model_dir / FP16_ONNX_NAME
        if not fp32.is_file():
            raise BackendUnavailable(f"no {ONNX_NAME} in {model_dir}")
        available = ort.get_available_providers()
        if device == "auto":
            device = "cuda" if CUDA_PROVIDER in available else "cpu"
        if device == "cuda" and CUDA_PROVIDER not in available:
            raise BackendUnavailable("onnxruntime has no CUDA execution provider here")
        path = fp16 if device == "cuda" and fp16.is_file() else fp32
        self.session = ort_session(ort, path, [CUDA_PROVIDER, CPU_PROVIDER] if device == "cuda" else [CPU_PROVIDER])
        if device == "cuda" and CUDA_PROVIDER not in self.session.get_providers():
            log.warning("onnxruntime: the CUDA execution provider did not load (session runs on %s): using the CPU", ", ".join(self.session.get_providers()))
            device = "cpu"
            if path != fp32:
                path, self.session = fp32, ort_session(ort, fp32, [CPU_PROVIDER])
        self.input_name = self.session.get_inputs()[0].name
        self.device = device
        self.name = f"onnxruntime-{device}" + ("-fp16" if path == fp16 else "")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def import_openvino():
    """``openvino`` without its model-conversion API: the package imports that (absl, telemetry,
    urllib: 0.1 s of a 0.9 s run) when it is present, and inference never uses it."""
    blocked = "openvino.tools.ovc" not in sys.modules
    if blocked:
        sys.modules["openvino.tools.ovc"] = None  # the package's own try/except skips it
    try:
        import openvino
    finally:
        if blocked and sys.modules.get("openvino.tools.ovc", 0) is None:
            del sys.modules["openvino.tools.ovc"]  # an explicit import later still works
    return openvino


class OpenVinoBackend:
    """OpenVINO on the CPU, from the FP32 ONNX graph. Precision ``auto`` is bf16 where the CPU does
    bf16 natively (AMX or AVX512-BF16: OpenVINO's own default there; class Dice within 0.001 of
    FP32 on the validation sets, docs/benchmarks.md), else fp32; ``fp32`` forces FP32."""

    PRECISIONS = ("auto", "bf16", "fp32")

    def __init__(self, model_dir: Path, config: Config, device: str, precision: str = "auto"):
        if device == "cuda":
            raise BackendUnavailable("the OpenVINO backend runs on the CPU only")
        try:
            ov = import_openvino()
        except ImportError:
            raise BackendUnavailable("openvino is not installed") from None
        path = model_dir / ONNX_NAME
        if not path.is_file():
            raise BackendUnavailable(f"no {ONNX_NAME} in {model_dir}")
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.device = "cpu"
        self.compile(precision)

    def compile(self, precision: str) -> None:
        """(Re)compile the model at ``precision`` (one of PRECISIONS)."""
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision must be one of {self.PRECISIONS}")
        properties = {"PERFORMANCE_HINT": "LATENCY"}
        if precision != "auto":
            properties["INFERENCE_PRECISION_HINT"] = {"bf16": "bf16", "fp32": "f32"}[precision]
        compiled = self.core.compile_model(self.model, "CPU", properties)
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if chosen not in ("bf16", "f32"):  # e.g. f16 on ARM: not validated here
            return self.compile("fp32")
        self.request = compiled.create_infer_request()
        self.precision = "bf16" if chosen == "bf16" else "fp32"
        self.name = f"openvino-cpu-{self.precision}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True, share_outputs=False)[0]


def _tensorrt(model_dir: Path, config: Config, device: str) -> Backend:
    if device == "cpu":
        raise BackendUnavailable("TensorRT needs a GPU")
    from algorithm.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(model_dir, fallback=lambda: OnnxBackend(model_dir, config, "auto"))


_FACTORIES: dict[str, Callable[[Path, Config, str], Backend]] = {
    "tensorrt": _tensorrt,
    "onnxruntime": OnnxBackend,
    "openvino": OpenVinoBackend,
    "torch": torch_backend,
}


def load_backend(model_dir: Path, config: Config, backend: str = "auto", device: str = "auto") -> Backend:
    """The requested backend, or with ``auto`` the first that loads of TensorRT, ONNX Runtime on
    CUDA, OpenVINO, ONNX Runtime on the CPU and PyTorch (AUTO_ORDER). Any exception while loading one (a missing library or file, a
    malformed engine sidecar, a CUDA error) passes over to the next; the choice, and why others
    were passed over, is logged."""
    if backend not in BACKENDS or device not in DEVICES:
        raise ValueError(f"backend must be one of {BACKENDS} and device one of {DEVICES}")
    if backend == "auto":
        attempts = [(name, dev or device) for name, dev in AUTO_ORDER if dev is None or device in ("auto", dev)]
    else:
        attempts = [(backend, dev) for dev in (["cuda", "cpu"] if device == "auto" and backend == "onnxruntime" else [device])]
    reasons = []
    for name, dev in attempts:
        try:
            chosen = _FACTORIES[name](model_dir, config, dev)
        except BackendUnavailable as err:
            reasons.append(f"{name}({dev}): {err}")
            log.debug("backend %s on %s unavailable: %s", name, dev, err)
            continue
        except Exception as err:  # a backend that breaks while loading must not end the run
            reason = error_line(err)
            reasons.append(f"{name}({dev}): {reason}")
            log.warning("backend %s on %s failed to load (%s)", name, dev, reason)
            continue
        log.info("backend: %s%s", chosen.name, f" (passed over: {'; '.join(reasons)})" if reasons else "")
        return chosen
    raise BackendUnavailable("no inference backend could be loaded: " + "; ".join(reasons))
