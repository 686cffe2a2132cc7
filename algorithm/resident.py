"""The predict stage on the network's device, for the ONNX Runtime and PyTorch backends (CUDA or CPU).

ONNX Runtime (``Resident``): the preprocessed volume is uploaded once; for each batch a small ONNX graph
(``resources/context.onnx``, written by ``python -m algorithm.resident``: Gather the two slices
around each 2.5D channel position, blend them with ``algorithm.preprocess.context_weights``'
weights, Pad to the network's divisor) builds the network's input where the volume lies, the
network's session takes it from there by I/O binding, and the class head takes the logits
from there too; only the uint8 class map comes back to the host. On a GPU this spares the
host the batch upload and the logits' round trip (a float32 logit map is 16 times the size of
the class map).

PyTorch (``TorchResident``): the same steps in torch on the backend's device (context weights
from ``preprocess.context_weights``, the logits resampled bilinearly with half-pixel centres like
the class head's Resize, then the argmax), FP16 autocast on CUDA as the backend does.

The host path (``pipeline.predict_classes`` with numpy context stacking) stays for TensorRT,
for test-time mirroring, and where the context graph cannot load; the class maps agree
(test/test_resident.py: ONNX Runtime bit for bit, PyTorch but for logits within rounding of a tie).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from algorithm.backend_base import CPU_PROVIDER, CUDA_PROVIDER, error_line, ort_session, write_graph
from algorithm.backends import OnnxBackend, TorchBackend
from algorithm.config import Config
from algorithm.preprocess import context_weights, padding

CONTEXT_PATH = Path(__file__).parent / "resources" / "context.onnx"

log = logging.getLogger("algorithm")


def batch_weights(n_slices: int, indices: range, slice_spacing: float, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``preprocess.context_weights`` for a batch of slices: lo and hi (B, C) int64, w (B, C, 1, 1) float32."""
    lo, hi, w = (np.stack(a) for a in zip(*(context_weights(n_slices, i, slice_spacing, config) for i in indices)))
    return lo, hi, w[..., None, None]


class Resident:
    """The context graph beside an ONNX Runtime model session and class-head session, all on ``device``."""

    def __init__(self, ort, model, head, device: str, path: Path = CONTEXT_PATH):
        self.ort, self.model, self.head, self.device = ort, model, head, device
        self.context = ort_session(ort, path, [CUDA_PROVIDER, CPU_PROVIDER] if device == "cuda" else [CPU_PROVIDER], spin=False)

    def upload(self, volume: np.ndarray):
        """The preprocessed volume (N, h, w) float32, as an OrtValue on the device."""
        return self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(volume, dtype=np.float32), self.device, 0)

    def classes(self, volume, indices: range, slice_spacing: float, config: Config, fill: float, shape: tuple[int, int]) -> np.ndarray:
        """uint8 class map (len(indices), H, W) at ``shape`` of the slices ``indices`` of the uploaded
        ``volume`` (an OrtValue, (N, h, w)); ``fill``: the padding value."""
        n_slices, *h_w = volume.shape()
        lo, hi, w = batch_weights(n_slices, indices, slice_spacing, config)
        pads = np.array([0, 0, 0, 0, 0, 0, *padding(h_w, config.divisor)], dtype=np.int64)
        batch = self._run(self.context, {"volume": volume, "lo": lo, "hi": hi, "weight": w, "pads": pads, "fill": np.array(fill, dtype=np.float32)})
        logits = self._run(self.model, {self.model.get_inputs()[0].name: batch})
        feeds = self.head.feeds(tuple(logits.shape()), shape, tuple(h_w))
        return self._run(self.head.session, {"logits": logits, **feeds}, to_host=True)

    def _run(self, session, inputs: dict, to_host: bool = False):
        """Run ``session`` by I/O binding (inputs: OrtValues, or C-contiguous numpy arrays); return its
        output as an OrtValue on the device, or as numpy."""
        binding = session.io_binding()
        for name, value in inputs.items():
            if isinstance(value, self.ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, value)
        binding.bind_output(session.get_outputs()[0].name, "cpu" if to_host else self.device, 0)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0] if to_host else binding.get_outputs()[0]


class TorchResident:
    """The device-side predict stage of a PyTorch backend (algorithm.backends.TorchBackend)."""

    def __init__(self, backend):
        self.backend, self.torch = backend, backend.torch

    def upload(self, volume: np.ndarray):
        """The preprocessed volume (N, h, w) float32, as a tensor on the backend's device."""
        return self.torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32)).to(self.backend.device)

    def classes(self, volume, indices: range, slice_spacing: float, config: Config, fill: float, shape: tuple[int, int]) -> np.ndarray:
        """As ``Resident.classes``, for an uploaded tensor ``volume``."""
        torch = self.torch
        n_slices, h, w = volume.shape
        lo, hi, weight = (torch.from_numpy(a).to(volume.device) for a in batch_weights(n_slices, indices, slice_spacing, config))
        with torch.inference_mode():
            batch = (1 - weight) * volume[lo] + weight * volume[hi]
            ph, pw = padding((h, w), config.divisor)
            batch = torch.nn.functional.pad(batch, (0, pw, 0, ph), value=fill)
            logits = self.backend.forward(batch)[..., :h, :w]
            resized = torch.nn.functional.interpolate(logits, size=tuple(shape), mode="bilinear", align_corners=False)
            return resized.argmax(dim=1).to(torch.uint8).cpu().numpy()


def load_resident(backend, head, path: Path = CONTEXT_PATH) -> Resident | TorchResident | None:
    """The device-side predict stage for a PyTorch ``backend`` on CUDA (on the CPU, torch's
    resampling is slower than the ONNX class head the host path uses), or for an ONNX Runtime one
    with an ONNX class ``head``; None (the host path) for others, or where the graph cannot load (logged)."""
    if isinstance(backend, TorchBackend):
        return TorchResident(backend) if backend.device == "cuda" else None
    if not isinstance(backend, OnnxBackend) or head is None:
        return None
    import onnxruntime as ort

    try:
        return Resident(ort, backend.session, head, backend.device, path)
    except Exception as err:  # a missing or broken file: the host path still works
        log.warning("context graph: %s; stacking slices on the host", error_line(err))
        return None


def build_graph():
    """The context graph as an ONNX GraphProto (needs the ``onnx`` package: a development tool).
    Channels are ``(1 - w) * volume[lo] + w * volume[hi]``, the operations of
    ``preprocess.context_slices`` in the same order, so both give the same float32 values."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gather", ["volume", "lo"], ["below"], axis=0),
        helper.make_node("Gather", ["volume", "hi"], ["above"], axis=0),
        helper.make_node("Sub", ["one", "weight"], ["rest"]),
        helper.make_node("Mul", ["rest", "below"], ["part_below"]),
        helper.make_node("Mul", ["weight", "above"], ["part_above"]),
        helper.make_node("Add", ["part_below", "part_above"], ["blended"]),
        helper.make_node("Pad", ["blended", "pads", "fill"], ["image"], mode="constant"),
    ]
    return helper.make_graph(
        nodes, "context",
        [helper.make_tensor_value_info("volume", TensorProto.FLOAT, ["slices", "h", "w"]),
         helper.make_tensor_value_info("lo", TensorProto.INT64, ["n", "c"]),
         helper.make_tensor_value_info("hi", TensorProto.INT64, ["n", "c"]),
         helper.make_tensor_value_info("weight", TensorProto.FLOAT, ["n", "c", 1, 1]),
         helper.make_tensor_value_info("pads", TensorProto.INT64, [8]),
         helper.make_tensor_value_info("fill", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", "c", "H", "W"])],
        [numpy_helper.from_array(np.array(1, dtype=np.float32), "one")],
    )


def main() -> int:
    """Write resources/context.onnx."""
    write_graph(build_graph(), CONTEXT_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
