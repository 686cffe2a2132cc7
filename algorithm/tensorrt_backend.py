"""TensorRT engine backend (GPU only). Kept thin; see export.sh for building engines."""

from __future__ import annotations

from pathlib import Path

from algorithm.backends import BackendUnavailable
from algorithm.config import Config


class TensorRTBackend:
    """Runs a serialized TensorRT engine built for this GPU and TensorRT version."""

    def __init__(self, model_dir: Path, config: Config):
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise BackendUnavailable("tensorrt is not installed") from None
        raise BackendUnavailable("TensorRT backend not implemented yet")
