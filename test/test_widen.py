"""Function-preserving widening (train.widen) on the tiny model folder."""

import json

import pytest

torch = pytest.importorskip("torch")

from algorithm.config import Config  # noqa: E402
from algorithm.model import build_model, load_weights  # noqa: E402
from train.widen import main  # noqa: E402


def _logits(folder, batch, train: bool = False):
    model = build_model(Config.load(folder))
    model.load_state_dict(load_weights(folder / "model.pt"))
    model.train(train)
    with torch.no_grad():
        return model(batch)


def test_wider_model_computes_the_same_logits(tmp_path, tiny_model_dir):
    out = tmp_path / "wide"
    assert main([str(tiny_model_dir), "--widths", "6,12,20", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["widths"] == [6, 12, 20]
    batch = torch.randn(2, Config.load(tiny_model_dir).in_channels, 32, 32)
    for train in (False, True):  # running statistics, and batch statistics
        assert torch.allclose(_logits(out, batch, train), _logits(tiny_model_dir, batch, train), atol=1e-5)
    wide = load_weights(out / "model.pt")
    assert wide["encoders.0.0.weight"][4:].abs().sum() > 0  # new channels are not dead


@pytest.mark.parametrize("widths", ["2,8,16", "4,8", "4,8,16,32"])
def test_narrower_or_other_depth_is_refused(tmp_path, tiny_model_dir, widths):
    assert main([str(tiny_model_dir), "--widths", widths, str(tmp_path / "x")]) == 2
