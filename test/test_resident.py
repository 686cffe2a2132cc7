"""The device-side predict stage (algorithm.resident, ONNX Runtime and PyTorch) against the host path, on the CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from algorithm.config import Config
from algorithm.preprocess import context_slices, pad_to_multiple, padding
from algorithm.resident import CONTEXT_PATH, Resident, batch_weights, load_resident

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: batches are stacked on the host only")


def smooth_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=shape), axis=2).astype(np.float32)


@pytest.mark.parametrize("shape,slice_spacing", [((7, 30, 41), 4.4), ((12, 32, 32), 0.9), ((1, 20, 25), 3.3)])
def test_context_graph_matches_numpy_bit_for_bit(shape, slice_spacing):
    config = Config(widths=(4, 8, 16))
    volume = smooth_volume(shape)
    session = ort.InferenceSession(str(CONTEXT_PATH), providers=["CPUExecutionProvider"])
    indices = range(shape[0])
    expected, _ = pad_to_multiple(np.stack([context_slices(volume, i, slice_spacing, config) for i in indices]), config.divisor, -3.5)
    lo, hi, w = batch_weights(shape[0], indices, slice_spacing, config)
    pads = np.array([0, 0, 0, 0, 0, 0, *padding(shape, config.divisor)], dtype=np.int64)
    ours = session.run(None, {"volume": volume, "lo": lo, "hi": hi, "weight": w, "pads": pads, "fill": np.array(-3.5, dtype=np.float32)})[0]
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)


def segment_both_ways(model_dir, volume, spacing, **kwargs):
    from algorithm.pipeline import Segmenter, predict_classes

    segmenter = Segmenter.load(model_dir, backend="onnxruntime", device="cpu", **kwargs)
    assert isinstance(segmenter.resident, Resident)
    resident = predict_classes(volume, spacing, segmenter)
    segmenter.resident = None
    return resident, predict_classes(volume, spacing, segmenter)


@pytest.mark.parametrize("shape,spacing,batch", [((9, 70, 53), (3.3, 0.9, 1.1), 4), ((20, 48, 40), (0.9, 1.5, 1.5), 6), ((1, 40, 40), (4.0, 1.2, 1.2), 4)])
def test_same_class_map_as_the_host_path(tiny_model_dir, shape, spacing, batch):
    volume = smooth_volume(shape, seed=1) * 50 + 300
    resident, host = segment_both_ways(tiny_model_dir, volume, spacing, batch_size=batch)
    assert resident.dtype == np.uint8 and resident.shape == shape
    np.testing.assert_array_equal(resident, host)


@pytest.mark.parametrize("shape,spacing", [((9, 70, 53), (3.3, 0.9, 1.1)), ((1, 40, 40), (4.0, 1.2, 1.2))])
def test_torch_on_its_device_gives_the_host_paths_class_map(tiny_model_dir, shape, spacing):
    pytest.importorskip("torch")
    from algorithm.pipeline import Segmenter, predict_classes
    from algorithm.resident import TorchResident

    segmenter = Segmenter.load(tiny_model_dir, backend="torch", device="cpu", batch_size=4)
    assert segmenter.resident is None  # on the CPU the host path (ONNX head) is faster
    volume = smooth_volume(shape, seed=2) * 50 + 300
    host = predict_classes(volume, spacing, segmenter)
    segmenter.resident = TorchResident(segmenter.backend)  # what CUDA gets, run on the CPU
    resident = predict_classes(volume, spacing, segmenter)
    assert resident.dtype == np.uint8 and resident.shape == shape
    assert np.mean(resident == host) >= 0.999  # torch's and ONNX Runtime's resampling differ in rounding only


def test_mirroring_and_other_backends_use_the_host_path(tiny_model_dir, monkeypatch):
    from algorithm.class_head import load_class_head
    from algorithm.pipeline import Segmenter, predict_classes

    assert load_resident(object(), load_class_head("cpu")) is None  # no ONNX Runtime session
    segmenter = Segmenter.load(tiny_model_dir, backend="onnxruntime", device="cpu", mirror=True)
    assert load_resident(segmenter.backend, None) is None  # no class head
    monkeypatch.setattr(segmenter.resident, "upload", pytest.fail)  # mirroring averages logits on the host
    predict_classes(smooth_volume((3, 30, 30)), (3.3, 1.0, 1.0), segmenter)
    pytest.importorskip("torch")
    assert Segmenter.load(tiny_model_dir, backend="torch", device="cpu").resident is None


def test_a_failing_device_run_falls_back_to_the_host(tiny_model_dir, caplog, monkeypatch):
    from algorithm.pipeline import Segmenter, predict_classes

    volume, spacing = smooth_volume((6, 40, 40)) * 50 + 300, (3.3, 1.0, 1.0)
    segmenter = Segmenter.load(tiny_model_dir, backend="onnxruntime", device="cpu")
    expected = predict_classes(volume, spacing, segmenter)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access\nmore")

    monkeypatch.setattr(segmenter.resident, "classes", broken)
    with caplog.at_level(logging.WARNING, logger="algorithm"):
        got = predict_classes(volume, spacing, segmenter)
    np.testing.assert_array_equal(got, expected)
    assert segmenter.resident is None
    assert "device-side prediction failed (RuntimeError: CUDA error: an illegal memory access)" in caplog.text


def test_a_missing_or_broken_graph_leaves_the_host_path(tmp_path, tiny_model_dir, caplog):
    from algorithm.pipeline import Segmenter

    segmenter = Segmenter.load(tiny_model_dir, backend="onnxruntime", device="cpu")
    (tmp_path / "context.onnx").write_bytes(b"not onnx")
    with caplog.at_level(logging.WARNING, logger="algorithm"):
        assert load_resident(segmenter.backend, segmenter.head, tmp_path / "context.onnx") is None
        assert load_resident(segmenter.backend, segmenter.head, tmp_path / "missing.onnx") is None
    assert caplog.text.count("stacking slices on the host") == 2


def test_graph_file_is_what_the_builder_writes(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed: cannot rebuild the context graph")
    from algorithm.resident import build_graph

    from algorithm.backend_base import write_graph

    write_graph(build_graph(), tmp_path / "graph.onnx")
    assert CONTEXT_PATH.read_bytes() == (tmp_path / "graph.onnx").read_bytes(), "run python -m algorithm.resident"
