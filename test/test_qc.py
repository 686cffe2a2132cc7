"""QC outputs: a readable PNG of sagittal slices and per-structure volumes in ml."""

from __future__ import annotations

import json

import numpy as np
import pytest

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


def test_each_structure_is_drawn_on_the_panel_of_the_slice_it_was_measured_in():
    from algorithm.measure import Chord, Level
    from algorithm.qc import measurement_panels

    chord = Chord((0.0, 0.0), (10.0, 0.0))
    levels = [Level(label, "disc", s, {"middle": chord}) for label, s in ((201, 3), (202, 3), (203, 4), (204, 9))]
    panels = measurement_panels(levels)
    assert [(s, [lv.label for lv in group]) for s, _, group in panels] == [(3, [201, 202]), (4, [203]), (9, [204])]
    assert not any("dashed" in caption for _, caption, _ in panels)
    (s, caption, group), *_ = measurement_panels(levels, most=1)
    assert s == 3 and [lv.label for lv in group] == [201, 202, 203, 204] and "dashed" in caption


def test_centroids_in_physical_lps_mm(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    from algorithm.geometry import canonical_to_lps, orientation

    array = np.zeros((6, 40, 30), np.int16)  # a PIR file: ITK (x, y, z) = (posterior, inferior, right) -> numpy (z, y, x)
    array[2, 10, 20] = 5  # ITK index (20, 10, 2)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.8, 3.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((0, 0, -1, 1, 0, 0, 0, -1, 0))
    orient = orientation(image.GetDirection(), image.GetSpacing())
    canonical = orient.to_canonical(sitk.GetArrayFromImage(image))
    _, js = write_qc(np.zeros(canonical.shape, np.float32), canonical, orient.spacing, tmp_path, "c", to_lps=lambda i: canonical_to_lps(i, orient, image))
    want = image.TransformContinuousIndexToPhysicalPoint((20.0, 10.0, 2.0))
    assert np.allclose(json.loads(js.read_text())["centroids_lps_mm"]["5"], want, atol=0.05)


def test_qc_json_gives_each_structures_mean_probability_and_the_ones_to_review(tmp_path):
    from algorithm.qc import REVIEW_PROBABILITY

    labels = np.zeros((4, 20, 10), np.int16)
    labels[:, 2:8], labels[:, 10:16] = 1, 201
    probability = np.full(labels.shape, 0.99, np.float32)
    probability[:, 10:16] = REVIEW_PROBABILITY - 0.1
    _, js = write_qc(np.zeros(labels.shape), labels, (2.0, 0.5, 1.0), tmp_path, "case", probability=probability)
    record = json.loads(js.read_text())
    assert record["probability"] == {"1": pytest.approx(0.99, abs=1e-3), "201": pytest.approx(REVIEW_PROBABILITY - 0.1, abs=1e-3)}
    assert record["review"] == {"below_probability": REVIEW_PROBABILITY, "structures": [201]}
