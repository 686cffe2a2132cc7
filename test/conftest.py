"""Shared fixtures: a tiny untrained model and the location of the real SPIDER data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"real SPIDER data not found at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small untrained model (weights, ONNX, config) for end-to-end tests."""
    pytest.importorskip("torch")
    from spider_tools.benchmark import random_model
    from algorithm.config import Config

    return random_model(tmp_path_factory.mktemp("tiny_model"), Config(widths=(4, 8, 16), spacing=1.5))
