"""Backend loading with fakes: any failure of one backend passes over to the next, ONNX Runtime
reports the execution provider it really runs on and takes the FP16 graph on CUDA, and the
TensorRT backend does not import the loader."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import types

import pytest

from algorithm import backends
from algorithm.backends import FP16_ONNX_NAME, BackendUnavailable, OnnxBackend, load_backend
from algorithm.config import Config


def _broken(message: str, kind: type[Exception] = RuntimeError):
    def factory(model_dir, config, device):
        raise kind(message)

    return factory


@pytest.mark.parametrize("kind", [RuntimeError, ValueError, KeyError])
def test_auto_passes_over_a_backend_that_raises(tiny_model_dir, monkeypatch, caplog, kind):
    monkeypatch.setitem(backends._FACTORIES, "tensorrt", _broken("CUDA error 700 (cudaErrorIllegalAddress)", kind))
    caplog.set_level(logging.INFO, "algorithm")
    chosen = load_backend(tiny_model_dir, Config.load(tiny_model_dir), "auto", "auto")
    assert chosen.name.startswith(("onnxruntime", "openvino"))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"tensorrt(auto): {kind.__name__}" in logged and "CUDA error 700" in logged


def test_auto_falls_back_to_torch_when_onnxruntime_session_fails(tiny_model_dir, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(backends._FACTORIES, "openvino", _broken("openvino is not installed", BackendUnavailable))
    monkeypatch.setitem(backends._FACTORIES, "onnxruntime", _broken("[ONNXRuntimeError] : 1 : FAIL : Load model failed"))
    assert load_backend(tiny_model_dir, Config.load(tiny_model_dir), "auto", "cpu").name == "torch-cpu"


@pytest.mark.parametrize("device, tried", [
    ("auto", ["tensorrt-auto", "onnxruntime-cuda", "openvino-cpu", "onnxruntime-cpu", "torch-auto"]),
    ("cpu", ["tensorrt-cpu", "openvino-cpu", "onnxruntime-cpu", "torch-cpu"]),
    ("cuda", ["tensorrt-cuda", "onnxruntime-cuda", "torch-cuda"]),
])
def test_auto_order_puts_the_gpu_first_then_openvino_on_the_cpu(tiny_model_dir, monkeypatch, device, tried):
    attempts = []

    def unavailable(name):
        def factory(model_dir, config, dev):
            attempts.append(f"{name}-{dev}")
            raise BackendUnavailable("not here")

        return factory

    for name in ("tensorrt", "onnxruntime", "openvino", "torch"):
        monkeypatch.setitem(backends._FACTORIES, name, unavailable(name))
    with pytest.raises(BackendUnavailable):
        load_backend(tiny_model_dir, Config.load(tiny_model_dir), "auto", device)
    assert attempts == tried


def test_explicit_backend_that_raises_is_one_error(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(backends._FACTORIES, "onnxruntime", _broken("session creation failed"))
    with pytest.raises(BackendUnavailable, match=r"onnxruntime\(cpu\): RuntimeError: session creation failed"):
        load_backend(tiny_model_dir, Config.load(tiny_model_dir), "onnxruntime", "cpu")


class FakeSession:
    """An ONNX Runtime session that records its model and reports the given providers."""

    opened: list[tuple[str, list[str]]] = []

    def __init__(self, path, options=None, providers=None, runs_on=None):
        names = [p[0] if isinstance(p, tuple) else p for p in providers]  # a provider may come with its options
        self.path, self.providers = path, runs_on if runs_on is not None else names
        FakeSession.opened.append((path, names))

    def get_providers(self):
        return list(self.providers)

    def get_inputs(self):
        return [types.SimpleNamespace(name="image")]


@pytest.fixture
def fake_ort(monkeypatch):
    """onnxruntime that claims a CUDA provider; ``runs_on`` sets what its sessions report."""
    import onnxruntime

    state = {"runs_on": None}
    FakeSession.opened = []
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda path, options=None, providers=None: FakeSession(path, options, providers, state["runs_on"]))
    return state


def test_onnxruntime_reports_cpu_when_cuda_provider_did_not_load(tiny_model_dir, fake_ort, caplog):
    fake_ort["runs_on"] = ["CPUExecutionProvider"]
    backend = OnnxBackend(tiny_model_dir, Config.load(tiny_model_dir), "cuda")
    assert backend.name == "onnxruntime-cpu" and backend.device == "cpu"
    assert "CUDA execution provider did not load" in caplog.text


def test_onnxruntime_cuda_runs_fp16_graph_where_present(tiny_model_dir, tmp_path, fake_ort):
    config = Config.load(tiny_model_dir)
    assert OnnxBackend(tiny_model_dir, config, "cuda").name == "onnxruntime-cuda"  # no FP16 graph: FP32
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (model / FP16_ONNX_NAME).write_bytes((model / "model.onnx").read_bytes())
    backend = OnnxBackend(model, config, "cuda")
    assert backend.name == "onnxruntime-cuda-fp16" and backend.device == "cuda"
    assert FakeSession.opened[-1] == (str(model / FP16_ONNX_NAME), ["CUDAExecutionProvider", "CPUExecutionProvider"])
    fake_ort["runs_on"] = ["CPUExecutionProvider"]  # CUDA did not load: back to the FP32 graph on the CPU
    backend = OnnxBackend(model, config, "cuda")
    assert backend.name == "onnxruntime-cpu" and FakeSession.opened[-1] == (str(model / "model.onnx"), ["CPUExecutionProvider"])
    assert OnnxBackend(model, config, "cpu").name == "onnxruntime-cpu"


def test_tensorrt_backend_does_not_import_the_loader():
    code = "import sys, algorithm.tensorrt_backend; sys.exit('algorithm.backends' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_onnxruntime_session_sets_cudnn_algorithm_search_on_cuda_only(tmp_path):
    """CUDA sessions get CUDA_OPTIONS (no exhaustive cuDNN search on every start); the CPU none."""
    from algorithm.backend_base import CPU_PROVIDER, CUDA_OPTIONS, CUDA_PROVIDER, ort_session

    made = []
    ort = types.SimpleNamespace(SessionOptions=lambda: types.SimpleNamespace(log_severity_level=0),
                                InferenceSession=lambda path, options, providers: made.append(providers))
    ort_session(ort, tmp_path / "m.onnx", [CUDA_PROVIDER, CPU_PROVIDER])
    ort_session(ort, tmp_path / "m.onnx", [CPU_PROVIDER])
    assert made == [[(CUDA_PROVIDER, CUDA_OPTIONS), CPU_PROVIDER], [CPU_PROVIDER]]
    assert CUDA_OPTIONS["cudnn_conv_algo_search"] in ("HEURISTIC", "DEFAULT")
