"""Logits -> class map: resample the network's logits linearly to the input's in-plane grid, then
take the argmax, so boundaries are smooth at the input's resolution.

Two implementations of the same step, kept in agreement by test/test_class_head.py:

- ``ClassHead``: a small ONNX graph (Slice off the padding, Resize linear with half-pixel centres,
  ArgMax, Cast to uint8; ``resources/class_head.onnx``, written by ``python -m algorithm.class_head``) run by ONNX
  Runtime, on the GPU where the model runs there; only the uint8 map comes back. About 4x faster
  than numpy on 2 CPU cores (a 120 x 640 x 512 volume: 0.25 s against 1.1 s), and off the host
  on a GPU. Used whenever ONNX Runtime is installed, whatever backend runs the network.
- ``classes_numpy``: the separable numpy resampling of ``algorithm.preprocess``, where ONNX Runtime
  is not installed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from algorithm.backend_base import CPU_PROVIDER, CUDA_PROVIDER, error_line, ort_session, write_graph
from algorithm.preprocess import resample_inplane

HEAD_PATH = Path(__file__).parent / "resources" / "class_head.onnx"

log = logging.getLogger("algorithm")


def classes_numpy(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Logits (N, K, h, w) -> uint8 classes (N, H, W) at ``shape`` = (H, W)."""
    return resample_inplane(logits, tuple(shape), order=1).argmax(axis=1).astype(np.uint8)


def chosen_probability(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Logits (N, K, h, w) -> float32 (N, H, W) at ``shape``: the softmax probability of the class
    the network chose (its largest), resampled linearly like the logits."""
    logits = logits.astype(np.float32, copy=False)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    top = (1.0 / exp.sum(axis=1, keepdims=True)).astype(np.float32)  # the largest exp is 1
    return resample_inplane(top, tuple(shape), order=1)[:, 0]


class ClassHead:
    """The ONNX graph of this module in an ONNX Runtime session on ``device``."""

    def __init__(self, ort, device: str, path: Path = HEAD_PATH):
        providers = [CUDA_PROVIDER, CPU_PROVIDER] if device == "cuda" and CUDA_PROVIDER in ort.get_available_providers() else [CPU_PROVIDER]
        # no spinning: between its calls the model's session runs, and spinning threads took its
        # cores (0.7 s of a 120-slice volume on 2 cores)
        self.session = ort_session(ort, path, providers, spin=False)

    def __call__(self, logits: np.ndarray, shape: tuple[int, int], crop: tuple[int, int] | None = None) -> np.ndarray:
        """Logits (N, K, h', w'), padded beyond ``crop`` = (h, w) (default: not padded) -> uint8
        classes (N, H, W) at ``shape`` = (H, W)."""
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        return self.session.run(None, {"logits": logits, **self.feeds(logits.shape, shape, crop)})[0]

    @staticmethod
    def feeds(logits_shape: tuple[int, ...], shape: tuple[int, int], crop: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The graph's inputs other than the logits (of ``logits_shape``)."""
        crop = tuple(logits_shape[2:]) if crop is None else crop
        return {"sizes": np.array([*logits_shape[:2], *shape], dtype=np.int64), "crop": np.array(crop, dtype=np.int64)}


def load_class_head(device: str, path: Path = HEAD_PATH) -> ClassHead | None:
    """The ONNX head on ``device``, or None (numpy does the step) where ONNX Runtime or the graph
    file is missing or the session cannot be made; the reason is logged."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    try:
        return ClassHead(ort, device, path)
    except Exception as err:  # a missing or broken file, a provider that fails: numpy still works
        log.warning("class head: %s; resampling logits with numpy", error_line(err))
        return None


def build_head():
    """The head as an ONNX GraphProto (needs the ``onnx`` package: a development tool)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Slice", ["logits", "zeros", "crop", "axes"], ["cropped"]),
        helper.make_node("Resize", ["cropped", "", "", "sizes"], ["resized"], mode="linear", coordinate_transformation_mode="half_pixel"),
        helper.make_node("ArgMax", ["resized"], ["argmax"], axis=1, keepdims=0),
        helper.make_node("Cast", ["argmax"], ["classes"], to=TensorProto.UINT8),
    ]
    return helper.make_graph(
        nodes, "class_head",
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", "k", "h", "w"]), helper.make_tensor_value_info("sizes", TensorProto.INT64, [4]),
         helper.make_tensor_value_info("crop", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("classes", TensorProto.UINT8, ["n", "H", "W"])],
        [numpy_helper.from_array(np.zeros(2, dtype=np.int64), "zeros"), numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")],
    )


def main() -> int:
    """Write resources/class_head.onnx."""
    write_graph(build_head(), HEAD_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
