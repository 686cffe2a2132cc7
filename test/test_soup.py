"""Weight-space ensembling (train.soup) on tiny synthetic state dicts and a tiny model folder."""

import json

import pytest

torch = pytest.importorskip("torch")

from train.soup import interpolate, main  # noqa: E402


def test_interpolate_floats_and_keeps_integer_buffers_of_the_first():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(9)}
    out = interpolate(a, b, 0.25)
    assert torch.equal(out["w"], torch.tensor([1.0, 3.0])) and out["w"].dtype == torch.float32
    assert out["n"].item() == 5
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"]) and torch.equal(interpolate(a, b, 1.0)["w"], b["w"])


@pytest.mark.parametrize("b", [{"v": torch.zeros(2)}, {"w": torch.zeros(3)}])
def test_different_models_are_refused(b):
    with pytest.raises(ValueError):
        interpolate({"w": torch.zeros(2)}, b, 0.5)


def test_cli_writes_config_and_weights(tmp_path, tiny_model_dir):
    out = tmp_path / "soup"
    assert main([str(tiny_model_dir), str(tiny_model_dir / "model.pt"), "--weight", "0.5", str(out)]) == 0
    assert json.loads((out / "config.json").read_text()) == json.loads((tiny_model_dir / "config.json").read_text())
    a, got = torch.load(tiny_model_dir / "model.pt"), torch.load(out / "model.pt")
    assert all(torch.allclose(got[k].double(), a[k].double()) for k in a)  # a model with itself is itself
    assert main([str(tiny_model_dir), str(tmp_path / "missing.pt"), "--weight", "0.5", str(tmp_path / "x")]) == 2
    with pytest.raises(SystemExit):
        main([str(tiny_model_dir), str(tiny_model_dir), "--weight", "1.5", str(tmp_path / "y")])
