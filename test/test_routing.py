"""Model routing: the model for a series is chosen from its header (sagittal slice spacing)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from algorithm.config import Config
from algorithm.io import InputError
from algorithm.pipeline import DEFAULT_MODEL_DIR
from algorithm.routing import choose, holds_model, model_folders


def _root(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A model root with a thin-slice (< 2 mm) and a thick-slice copy of the tiny model."""
    for name, spacing in (("thin", [0.0, 2.0]), ("thick", [2.0, 1000.0])):
        shutil.copytree(tiny_model_dir, tmp_path / "models" / name)
        config = json.loads((tmp_path / "models" / name / "config.json").read_text())
        (tmp_path / "models" / name / "config.json").write_text(json.dumps(config | {"sagittal_spacing_mm": spacing}))
    return tmp_path / "models"


def test_choose_by_sagittal_spacing(tmp_path):
    models = {tmp_path / "thin": Config(sagittal_spacing_mm=(0.0, 2.0)), tmp_path / "thick": Config(sagittal_spacing_mm=(2.0, 1000.0))}
    assert choose(models, 0.9).name == "thin" and choose(models, 1.99).name == "thin"
    assert choose(models, 2.0).name == "thick" and choose(models, 9.6).name == "thick"
    with pytest.raises(InputError, match="no model for a sagittal spacing of 2000.00 mm"):
        choose(models, 2000.0)
    assert choose({tmp_path / "only": Config(sagittal_spacing_mm=(0.0, 2.0))}, 4.4).name == "only"  # one model: --model forces it


def test_model_folders_of_a_single_model_and_of_a_root(tmp_path, tiny_model_dir):
    assert list(model_folders(tiny_model_dir)) == [tiny_model_dir]
    assert [p.name for p in model_folders(_root(tmp_path, tiny_model_dir))] == ["thick", "thin"]
    with pytest.raises(InputError, match="no model folder"):
        model_folders(tmp_path / "empty")
    assert holds_model(tiny_model_dir) and holds_model(tmp_path / "models") and not holds_model(tmp_path / "empty")

    from algorithm.pipeline import Models

    models = Models(tmp_path / "models")
    assert tuple(models.config_for(0.9).sagittal_spacing_mm) == (0.0, 2.0) and tuple(models.config_for(4.4).sagittal_spacing_mm) == (2.0, 1000.0)
    assert models.loading == {}  # a config is read, no model loads


def test_bundled_models_cover_every_spider_slice_spacing_without_overlap():
    models = model_folders(DEFAULT_MODEL_DIR)
    assert sorted(p.name for p in models) == ["thick-slice", "thin-slice"]
    # the 33 spider-masks headers: T2-SPACE 0.86-0.92 mm, T1/T2 3.25-4.85 mm; the hidden test reaches 9.63 mm
    assert choose(models, 0.86).name == choose(models, 0.92).name == "thin-slice"
    assert choose(models, 3.25).name == choose(models, 4.85).name == choose(models, 9.63).name == "thick-slice"


def test_cli_loads_only_the_routed_model_and_names_it(tmp_path, tiny_model_dir, caplog, monkeypatch):
    import SimpleITK as sitk

    from algorithm import pipeline
    from algorithm.cli import main

    root = _root(tmp_path, tiny_model_dir)
    loaded = []
    original = pipeline.LoadingSegmenter.__init__
    monkeypatch.setattr(pipeline.LoadingSegmenter, "__init__", lambda self, folder, *a: (loaded.append(Path(folder).name), original(self, folder, *a))[1])
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 200, (40, 48, 6)).astype(np.int16))
    image.SetSpacing((0.8, 0.8, 4.0))  # (x, y, z): z is the sagittal axis of this axis-aligned LPS volume
    image.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))
    (tmp_path / "in").mkdir()
    sitk.WriteImage(image, str(tmp_path / "in" / "t2.mha"))
    with caplog.at_level(logging.INFO, logger="algorithm"):
        assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(root), "--backend", "onnxruntime", "--device", "cpu"]) == 0
    assert loaded == ["thick"]
    assert "(model thick;" in caplog.text
