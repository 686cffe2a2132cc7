"""Checkpoint -> ONNX (-> TensorRT engine, see tensorrt_backend.py)."""

from __future__ import annotations

from pathlib import Path

from algorithm.backends import ONNX_NAME, WEIGHTS_NAME
from algorithm.config import Config

OPSET = 17


def export_onnx(model_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Export ``model_dir``'s weights to ONNX with dynamic batch, height and width."""
    import torch

    from algorithm.model import build_model

    model_dir = Path(model_dir)
    config = Config.load(model_dir)
    model = build_model(config)
    model.load_state_dict(torch.load(model_dir / WEIGHTS_NAME, map_location="cpu", weights_only=True))
    model.eval()
    out_path = Path(out_path) if out_path else model_dir / ONNX_NAME
    size = 4 * config.divisor
    example = torch.zeros(1, config.in_channels, size, size)
    torch.onnx.export(
        model,
        example,
        str(out_path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}},
        opset_version=OPSET,
        dynamo=False,
    )
    return out_path
