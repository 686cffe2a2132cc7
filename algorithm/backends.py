"""Inference backends behind one interface: a callable from an input batch (N, C, H, W) float32
to logits (N, K, H, W) float32. Heavy libraries are imported only by the backend that needs them,
so a container running ONNX Runtime or TensorRT needs no torch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from algorithm.backend_base import CPU_PROVIDER, CUDA_PROVIDER, FP16_ONNX_NAME, ONNX_NAME, WEIGHTS_NAME, Backend, BackendUnavailable, error_line, ort_session
from algorithm.config import Config

__all__ = ["BACKENDS", "DEVICES", "FP16_ONNX_NAME", "ONNX_NAME", "WEIGHTS_NAME", "Backend", "BackendUnavailable",
           "OnnxBackend", "TorchBackend", "load_backend", "torch_backend"]

log = logging.getLogger("algorithm")

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
DEVICES = ("auto", "cpu", "cuda")


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


def _tensorrt(model_dir: Path, config: Config, device: str) -> Backend:
    if device == "cpu":
        raise BackendUnavailable("TensorRT needs a GPU")
    from algorithm.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(model_dir, fallback=lambda: OnnxBackend(model_dir, config, "auto"))


_FACTORIES: dict[str, Callable[[Path, Config, str], Backend]] = {
    "tensorrt": _tensorrt,
    "onnxruntime": OnnxBackend,
    "torch": torch_backend,
}


def load_backend(model_dir: Path, config: Config, backend: str = "auto", device: str = "auto") -> Backend:
    """The requested backend, or with ``auto`` the first that loads of TensorRT, ONNX Runtime
    (CUDA, then CPU) and PyTorch. Any exception while loading one (a missing library or file, a
    malformed engine sidecar, a CUDA error) passes over to the next; the choice, and why others
    were passed over, is logged."""
    if backend not in BACKENDS or device not in DEVICES:
        raise ValueError(f"backend must be one of {BACKENDS} and device one of {DEVICES}")
    order = list(_FACTORIES) if backend == "auto" else [backend]
    attempts = [(name, dev) for name in order for dev in (["cuda", "cpu"] if device == "auto" and name == "onnxruntime" else [device])]
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
