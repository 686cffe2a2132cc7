"""Logits -> class map: the ONNX head (ONNX Runtime) against the numpy resampling, on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest

from algorithm.class_head import HEAD_PATH, classes_numpy, load_class_head
from algorithm.preprocess import resample_inplane

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the numpy path is the only one")


def smooth_logits(shape, seed=0) -> np.ndarray:
    """Logits that vary smoothly in-plane, like a network's (random per-pixel logits are mostly ties)."""
    n, k, h, w = shape
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 3, (n, k, max(2, h // 8), max(2, w // 8))).astype(np.float32)
    return resample_inplane(coarse, (h, w), order=1)


@pytest.mark.parametrize("shape,out", [((3, 4, 50, 40), (80, 64)), ((2, 4, 61, 33), (40, 70)), ((1, 4, 20, 20), (20, 20)), ((2, 4, 1, 30), (1, 45))])
def test_onnx_head_agrees_with_numpy(shape, out):
    head = load_class_head("cpu")
    assert head is not None
    logits = smooth_logits(shape)
    ours, reference = head(logits, out), classes_numpy(logits, out)
    assert ours.dtype == np.uint8 and ours.shape == (shape[0], *out) == reference.shape
    assert np.mean(ours == reference) >= 0.999  # the two differ only where two logits are within float rounding


def test_onnx_head_crops_the_padding_itself():
    head = load_class_head("cpu")
    logits = smooth_logits((2, 4, 64, 64), seed=1)
    view = logits[..., :50, :45]  # the padding of the network's input, cropped off
    expected = head(np.ascontiguousarray(view), (70, 60))
    np.testing.assert_array_equal(head(logits, (70, 60), crop=(50, 45)), expected)
    np.testing.assert_array_equal(head(view, (70, 60)), expected)  # a view works too


def test_head_file_is_what_the_builder_writes(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed: cannot rebuild the head graph")
    from algorithm.class_head import build_head

    from algorithm.backend_base import write_graph

    write_graph(build_head(), tmp_path / "graph.onnx")
    assert HEAD_PATH.read_bytes() == (tmp_path / "graph.onnx").read_bytes(), "run python -m algorithm.class_head"


def test_a_missing_or_broken_head_falls_back_to_numpy(tmp_path, caplog):
    broken = tmp_path / "class_head.onnx"
    broken.write_bytes(b"not an onnx graph")
    assert load_class_head("cpu", broken) is None
    assert load_class_head("cpu", tmp_path / "missing.onnx") is None
    assert "resampling logits with numpy" in caplog.text
