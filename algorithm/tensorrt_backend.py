"""TensorRT engine backend (GPU only), kept thin.

A serialized engine only runs on the GPU architecture (compute capability) and the exact
TensorRT version it was built with. Engines are therefore named after both,
``model-sm75-trt10.13.3.9.engine``, with a JSON sidecar of the same stem recording the GPU, the
TensorRT version, the name and SHA-256 of the ONNX file it was built from and the optimisation profile.
At load time a missing, mismatched or stale engine raises ``BackendUnavailable`` with the reason,
so ``load_backend`` logs it and falls back to ONNX Runtime. Engines are built by
``python -m spider_tools.export`` (see ``spider_tools.export.build_engine``).

GPU memory and streams go through NVIDIA's ``cuda-python`` runtime bindings
(``cuda.bindings.runtime``): small, from the CUDA team, and no torch in the container.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np

from algorithm.backend_base import ONNX_NAME, Backend, BackendUnavailable
from algorithm.config import Config

log = logging.getLogger("algorithm")

INPUT_NAME, OUTPUT_NAME = "image", "logits"
MAX_FOV_MM = 400.0  # largest in-plane field of view of a SPIDER slice the profile covers
OPT_FOV_MM = 300.0  # typical lumbar sagittal field of view: the shape TensorRT tunes kernels for
MIN_BATCH, OPT_BATCH, MAX_BATCH = 1, 16, 32


def engine_stem(compute_capability: tuple[int, int], trt_version: str) -> str:
    """File stem of an engine for one GPU architecture and TensorRT version."""
    major, minor = compute_capability
    return f"model-sm{major}{minor}-trt{trt_version}"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _round_up(value: float, divisor: int) -> int:
    return max(divisor, int(math.ceil(value / divisor)) * divisor)


def profile_shapes(config: Config) -> dict[str, tuple[int, int, int, int]]:
    """Min / opt / max input shapes (N, C, H, W) of the engine's one optimisation profile:
    batch 1..32, slices from one ``divisor`` tile up to a ``MAX_FOV_MM`` field of view at the
    model's spacing, tuned for a ``OPT_FOV_MM`` field of view."""
    c, d = config.in_channels, config.divisor
    opt, big = _round_up(OPT_FOV_MM / config.spacing, d), _round_up(MAX_FOV_MM / config.spacing, d)
    return {"min": (MIN_BATCH, c, d, d), "opt": (OPT_BATCH, c, opt, opt), "max": (MAX_BATCH, c, big, big)}


def fits_profile(shape: tuple[int, ...], profile: dict) -> bool:
    """True if an (N, C, H, W) batch lies inside the profile's min..max range."""
    return all(lo <= n <= hi for n, lo, hi in zip(shape, profile["min"], profile["max"]))


def find_engine(model_dir: Path, compute_capability: tuple[int, int], trt_version: str) -> tuple[Path, dict]:
    """The engine in ``model_dir`` built for this GPU and TensorRT version, and its sidecar;
    raise BackendUnavailable saying what is there instead and why it cannot be used."""
    stem = engine_stem(compute_capability, trt_version)
    engine, sidecar = model_dir / f"{stem}.engine", model_dir / f"{stem}.json"
    if not engine.is_file() or not sidecar.is_file():
        others = sorted(p.name for p in model_dir.glob("model-sm*-trt*.engine"))
        found = f"found only {', '.join(others)}" if others else "found none"
        raise BackendUnavailable(f"no TensorRT engine {stem}.engine (with its .json) in {model_dir} for this GPU and TensorRT; {found} (build one with export.sh on this GPU)")
    meta = json.loads(sidecar.read_text())
    cc = f"{compute_capability[0]}.{compute_capability[1]}"
    if meta.get("compute_capability") != cc or meta.get("tensorrt_version") != trt_version:
        raise BackendUnavailable(f"{sidecar.name} says sm {meta.get('compute_capability')} / TensorRT {meta.get('tensorrt_version')}, but this is sm {cc} / TensorRT {trt_version}")
    onnx = model_dir / meta.get("onnx", ONNX_NAME)  # the graph it was built from
    if onnx.is_file() and meta.get("onnx_sha256") != sha256(onnx):
        raise BackendUnavailable(f"{engine.name} was built from another {onnx.name} than the one in {model_dir} (stale engine: rebuild it)")
    return engine, meta


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise BackendUnavailable("cuda-python (cuda.bindings) is not installed") from None
    return cudart


def _check(result):
    """Unpack a cuda.bindings call's (error, *values) tuple, raising on a CUDA error."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {int(err)} ({getattr(err, 'name', err)})")
    return values[0] if len(values) == 1 else tuple(values)


def device_info() -> tuple[tuple[int, int], str]:
    """Compute capability and name of CUDA device 0; BackendUnavailable without one."""
    cudart = _cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise BackendUnavailable("no CUDA device is visible")
    prop = _check(cudart.cudaGetDeviceProperties(0))
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return (int(prop.major), int(prop.minor)), name


class _DeviceBuffer:
    """A device allocation that grows on demand."""

    def __init__(self, cudart):
        self.cudart, self.ptr, self.nbytes = cudart, 0, 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr, self.nbytes = int(_check(self.cudart.cudaMalloc(nbytes))), nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr, self.nbytes = 0, 0


class TensorRTBackend:
    """Runs a serialized TensorRT engine built for this GPU and TensorRT version. Batches
    outside the engine's profile (slices wider than its field of view) go through the backend
    that ``fallback`` loads (``load_backend`` gives ONNX Runtime)."""

    def __init__(self, model_dir: Path, fallback: Callable[[], Backend] | None = None):
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailable("tensorrt is not installed") from None
        model_dir = Path(model_dir)
        cudart = _cudart()
        cc, gpu = device_info()
        path, meta = find_engine(model_dir, cc, trt.__version__)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendUnavailable(f"TensorRT could not deserialize {path.name}")
        self.context = self.engine.create_execution_context()
        self.cudart, self.stream = cudart, _check(cudart.cudaStreamCreate())
        self.inputs, self.outputs = _DeviceBuffer(cudart), _DeviceBuffer(cudart)
        self.profile = {k: tuple(v) for k, v in meta["profile"].items()}
        self.load_fallback, self.fallback = fallback, None
        self.device = "cuda"
        self.name = f"tensorrt-{meta.get('precision', 'fp16')}"
        log.debug("TensorRT engine %s on %s", path.name, gpu)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        cudart = self.cudart
        self.context.set_input_shape(INPUT_NAME, batch.shape)
        out = np.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=np.float32)
        src, dst = self.inputs.ensure(batch.nbytes), self.outputs.ensure(out.nbytes)
        self.context.set_tensor_address(INPUT_NAME, src)
        self.context.set_tensor_address(OUTPUT_NAME, dst)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(src, batch.ctypes.data, batch.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execution failed")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, dst, out.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return out

    def _outside_profile(self, batch: np.ndarray) -> np.ndarray:
        if self.fallback is None:
            if self.load_fallback is None:
                raise ValueError(f"slices of {batch.shape[2]}x{batch.shape[3]} exceed the TensorRT profile {self.profile['max']}")
            self.fallback = self.load_fallback()
            log.warning("slices of %sx%s exceed the TensorRT profile %s: using %s for them", *batch.shape[2:], self.profile["max"], self.fallback.name)
        return self.fallback(batch)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not fits_profile((1,) + batch.shape[1:], self.profile):
            return self._outside_profile(batch)
        step = self.profile["max"][0]
        return np.concatenate([self._run(np.ascontiguousarray(batch[i : i + step])) for i in range(0, len(batch), step)])

    def __del__(self):
        for buffer in (getattr(self, "inputs", None), getattr(self, "outputs", None)):
            if buffer is not None:
                buffer.free()
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
