"""Export: ONNX parity with PyTorch, the TensorRT engine's naming / profile / selection rules
(pure functions, no TensorRT needed), and the TensorRT build where TensorRT and a GPU exist."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from algorithm.backends import ONNX_NAME, BackendUnavailable, load_backend
from algorithm.config import Config
from spider_tools.export import FP16_MARGIN, FP16_ONNX_NAME, ONNX_ATOL, compare_logits, main, verify_onnx
from algorithm.tensorrt_backend import engine_stem, find_engine, fits_profile, profile_shapes, sha256


def test_onnx_matches_pytorch_on_real_sized_batch(tiny_model_dir):
    result = verify_onnx(tiny_model_dir)
    assert result["max_abs_diff"] < ONNX_ATOL
    assert result["label_agreement"] == 1.0


def test_export_cli_writes_checked_model_folder(tiny_model_dir, tmp_path, capsys):
    assert main([str(tiny_model_dir), str(tmp_path / "out")]) == 0
    for name in ("config.json", "model.pt", ONNX_NAME, FP16_ONNX_NAME):
        assert (tmp_path / "out" / name).is_file()
    text = capsys.readouterr().out
    assert "ONNX FP32 vs PyTorch" in text and "ONNX FP16 vs PyTorch" in text
    if shutil.which("nvidia-smi") is None:
        assert "no engine built" in text


def test_export_accepts_training_checkpoint_file(tiny_model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_model_dir / "config.json", run)
    state = torch.load(tiny_model_dir / "model.pt", weights_only=True)
    torch.save({"model": state, "epoch": 7}, run / "last.pt")
    assert main([str(run / "last.pt"), str(tmp_path / "out"), "--no-engine"]) == 0
    assert (tmp_path / "out" / ONNX_NAME).is_file()


@pytest.mark.parametrize("argv", [["/no/such/run"], ["--engine-only", "/no/such/model"]])
def test_export_bad_source_is_one_line_error(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("spider-export: error:") and "\n" not in err


def test_compare_logits_ignores_near_ties():
    ref = np.zeros((1, 2, 1, 2), np.float32)
    ref[0, 0, 0] = [1.0, 0.51]
    ref[0, 1, 0] = [0.0, 0.50]  # second pixel: margin 0.01, a near tie
    other = ref.copy()
    other[0, 1, 0, 1] = 0.52  # flips the near tie
    assert compare_logits(ref, other)["label_agreement"] == 0.5
    assert compare_logits(ref, other, FP16_MARGIN)["label_agreement"] == 1.0


def test_profile_covers_spider_slices():
    config = Config(spacing=0.75)
    shapes = profile_shapes(config)
    d, c = config.divisor, config.in_channels
    assert shapes["min"] == (1, c, d, d)
    assert shapes["max"][0] == 32 and shapes["max"][2] * config.spacing >= 400
    for key in ("min", "opt", "max"):
        assert shapes[key][1] == c and shapes[key][2] % d == 0 and shapes[key][3] % d == 0
    assert all(lo <= opt <= hi for lo, opt, hi in zip(shapes["min"], shapes["opt"], shapes["max"]))
    assert fits_profile((8, c, 384, 320), shapes)
    assert not fits_profile((8, c, shapes["max"][2] + d, 320), shapes)


def _fake_engine(model_dir, cc=(7, 5), version="10.13.3.9", **overrides):
    stem = engine_stem(cc, version)
    (model_dir / f"{stem}.engine").write_bytes(b"engine")
    meta = {"compute_capability": f"{cc[0]}.{cc[1]}", "tensorrt_version": version, "onnx_sha256": sha256(model_dir / ONNX_NAME)}
    (model_dir / f"{stem}.json").write_text(json.dumps(meta | overrides))
    return model_dir / f"{stem}.engine"


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_engine_name_records_gpu_and_tensorrt():
    assert engine_stem((7, 5), "10.13.3.9") == "model-sm75-trt10.13.3.9"


def test_find_engine_accepts_matching_engine(model_copy):
    path = _fake_engine(model_copy)
    found, meta = find_engine(model_copy, (7, 5), "10.13.3.9")
    assert found == path and meta["compute_capability"] == "7.5"


def test_find_engine_reports_absent_engine(model_copy):
    with pytest.raises(BackendUnavailable, match="found none"):
        find_engine(model_copy, (7, 5), "10.13.3.9")


@pytest.mark.parametrize("cc, version", [((8, 6), "10.13.3.9"), ((7, 5), "10.9.0.34")])
def test_find_engine_rejects_other_gpu_or_tensorrt(model_copy, cc, version):
    _fake_engine(model_copy)
    with pytest.raises(BackendUnavailable, match=r"found only model-sm75-trt10\.13\.3\.9\.engine"):
        find_engine(model_copy, cc, version)


def test_find_engine_rejects_inconsistent_sidecar(model_copy):
    _fake_engine(model_copy, compute_capability="8.6")
    with pytest.raises(BackendUnavailable, match="but this is sm 7.5"):
        find_engine(model_copy, (7, 5), "10.13.3.9")


def test_find_engine_rejects_stale_engine(model_copy):
    _fake_engine(model_copy, onnx_sha256="0" * 64)
    with pytest.raises(BackendUnavailable, match="stale engine"):
        find_engine(model_copy, (7, 5), "10.13.3.9")


def test_auto_backend_falls_back_without_tensorrt(tiny_model_dir):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: the fallback is not what happens")
    backend = load_backend(tiny_model_dir, Config.load(tiny_model_dir), "auto", "auto")
    assert backend.name.startswith(("onnxruntime", "openvino"))
    with pytest.raises(BackendUnavailable, match="tensorrt is not installed"):
        load_backend(tiny_model_dir, Config.load(tiny_model_dir), "tensorrt", "cuda")


def test_tensorrt_engine_builds_and_matches_onnxruntime(tiny_model_dir, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (it needs an NVIDIA GPU machine)")
    from spider_tools.export import FP16_ATOL, FP16_MIN_AGREEMENT, build_engine, export_onnx, verify_engine
    from algorithm.tensorrt_backend import TensorRTBackend, device_info

    try:
        device_info()
    except BackendUnavailable as err:
        pytest.skip(f"TensorRT is installed but {err}")
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    export_onnx(folder, half=True)
    engine = build_engine(folder, workspace_gb=1.0)
    assert engine.is_file() and engine.with_suffix(".json").is_file()
    result = verify_engine(folder)
    assert result["max_abs_diff"] < FP16_ATOL and result["label_agreement"] >= FP16_MIN_AGREEMENT
    backend = load_backend(folder, Config.load(folder), "tensorrt", "cuda")
    assert isinstance(backend, TensorRTBackend)
    config = Config.load(folder)
    big = np.zeros((40, config.in_channels, 64, 48), np.float32)  # more than one engine batch
    assert backend(big).shape == (40, config.num_classes, 64, 48)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_fp16_graph_is_checked_on_cuda_only_where_its_provider_loads(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import onnxruntime

    from spider_tools.export import ExportError, export_onnx, onnx_cuda_step

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    export_onnx(folder, half=True)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        onnx_cuda_step(folder)  # a real CUDA provider: the parity check itself
        assert "ONNX FP16 on CUDA vs PyTorch (CPU)" in capsys.readouterr().out
        return
    onnx_cuda_step(folder)
    assert "no CUDA provider here" in capsys.readouterr().out
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ExportError, match="CUDAExecutionProvider did not load"):  # claimed, but the session runs on the CPU
        onnx_cuda_step(folder)


def test_find_engine_checks_the_onnx_file_it_was_built_from(model_copy):
    """TensorRT >= 11 builds from the FP16 graph: the sidecar's hash is of that file, not of model.onnx."""
    fp16 = model_copy / FP16_ONNX_NAME
    fp16.write_bytes(b"fp16 graph")
    _fake_engine(model_copy, onnx=FP16_ONNX_NAME, onnx_sha256=sha256(fp16))
    assert find_engine(model_copy, (7, 5), "10.13.3.9")[1]["onnx"] == FP16_ONNX_NAME
    _fake_engine(model_copy, onnx=FP16_ONNX_NAME, onnx_sha256=sha256(model_copy / ONNX_NAME))
    with pytest.raises(BackendUnavailable, match=f"another {FP16_ONNX_NAME}"):
        find_engine(model_copy, (7, 5), "10.13.3.9")
