"""QC outputs: a readable PNG of sagittal slices and per-structure volumes in ml."""

from __future__ import annotations

import json

import numpy as np

from algorithm.qc import qc_slices, structure_volumes, write_qc


def labelled_volume() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((10, 60, 40), dtype=np.int16)
    labels[2:8, 5:20, 5:25] = 2
    labels[2:8, 20:26, 5:25] = 201
    labels[2:8, 26:45, 5:25] = 1
    labels[4:6, 5:55, 28:33] = 100
    labels[2:8, 45:50, 5:25] = 224  # a top-down disc value
    volume = np.random.default_rng(0).normal(100, 20, labels.shape) + 50 * (labels > 0)
    return volume.astype(np.float32), labels


def test_structure_volumes_in_ml_per_label_and_class():
    _, labels = labelled_volume()
    vols = structure_volumes(labels, (2.0, 0.5, 0.5))  # 0.5 mm3 per voxel
    assert vols["structures"]["1"] == round(6 * 19 * 20 * 0.5 / 1000, 3)
    assert set(vols["structures"]) == {"1", "2", "100", "201", "224"}
    assert vols["counts"] == {"vertebra": 2, "disc": 2, "canal": 1}
    total = sum(vols["structures"].values())
    assert abs(sum(vols["classes"].values()) - total) < 1e-6


def test_write_qc_writes_png_and_json(tmp_path):
    import matplotlib.pyplot as plt

    volume, labels = labelled_volume()
    png, js = write_qc(volume, labels, (2.0, 0.5, 1.0), tmp_path / "qc", "case")
    assert png.name == "case_qc.png" and js.name == "case_volumes.json"
    image = plt.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100
    record = json.loads(js.read_text())
    assert record["structures"]["201"] > 0
    assert record["measurements"]["discs"]["201"]["middle"] == 3.0  # rows 20-25 at 0.5 mm
    assert (tmp_path / "qc" / "case_measurements.csv").read_text().startswith("label,structure,slice,")


def test_write_qc_empty_labels(tmp_path):
    png, js = write_qc(np.zeros((4, 20, 10)), np.zeros((4, 20, 10), np.int16), (1.0, 1.0, 1.0), tmp_path, "empty")
    assert png.stat().st_size > 0
    assert json.loads(js.read_text())["structures"] == {}
    assert json.loads(js.read_text())["measurements"]["vertebrae"] == {}


def test_qc_slices_centre_on_labels():
    labels = np.zeros((40, 5, 5), dtype=np.int16)
    labels[20:30] = 1
    picks = qc_slices(labels)
    assert picks == sorted(picks) and all(20 <= p <= 29 for p in picks) and len(picks) == 3


def test_write_qc_lists_postprocessing_actions(tmp_path):
    volume, labels = labelled_volume()
    actions = [{"action": "dropped", "class": "vertebra", "volume_ml": 1.2, "centre_mm": [1.0, 2.0, 3.0], "reason": "off the spine column"}]
    _, js = write_qc(volume, labels, (2.0, 0.5, 1.0), tmp_path, "case", actions)
    assert json.loads(js.read_text())["postprocess"]["actions"] == actions
