"""SPIDER evaluation on hand-built cases with known answers, the CLI, and real masks against themselves."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from spider_tools.evaluate import ASD_KEYS, DICE_KEYS, INSTANCE_KEYS, METRICS, class_dice, evaluate_case, evaluate_dirs, main

OFFICIAL_KEYS = DICE_KEYS + ASD_KEYS


def box(shape, start, size, value=1) -> np.ndarray:
    """A label array with one box of ``value``."""
    array = np.zeros(shape, np.int16)
    array[tuple(slice(s, s + n) for s, n in zip(start, size))] = value
    return array


def sphere(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return (sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2).astype(np.int16)


def brute_force_asd(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Symmetric ASD from first principles: surface voxels are mask voxels with a 26-neighbour outside."""

    def surface_points(mask):
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask, bool)
        for shift in np.ndindex(3, 3, 3):
            inner &= padded[tuple(slice(s, s + n) for s, n in zip(shift, mask.shape))]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    pa, pb = surface_points(a.astype(bool)), surface_points(b.astype(bool))
    dist = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=-1)
    return float(np.concatenate([dist.min(axis=1), dist.min(axis=0)]).mean())


def spine(shape=(6, 40, 20)) -> np.ndarray:
    """Two vertebrae, a disc between them, a partial vertebra on top, and a canal behind them."""
    mask = np.zeros(shape, np.int16)
    mask[1:5, 2:8, 2:12] = 102  # partially visible vertebra
    mask[1:5, 10:18, 2:12] = 2
    mask[1:5, 18:21, 2:12] = 201
    mask[1:5, 21:29, 2:12] = 1
    mask[2:4, 2:36, 13:17] = 100
    return mask


def test_cuboid_shifted_by_one_voxel_matches_closed_form():
    n0, n1, n2 = 6, 8, 10
    ref = box((10, 12, 14), (2, 2, 2), (n0, n1, n2))
    pred = box((10, 12, 14), (3, 2, 2), (n0, n1, n2))
    spacing = (0.5, 2.0, 1.0)
    shell = 2 * n1 * n2 + (n0 - 2) * (2 * n1 + 2 * n2 - 4)
    # Faces normal to the shift lie one voxel (0.5 mm) apart, the side walls coincide.
    expected = 0.5 * (n1 * n2 + (n1 - 2) * (n2 - 2)) / shell
    # Official order: the shift axis gets 1.0 mm, and face voxels next to the x walls are 0.5 mm from them.
    expected_official = (n1 * n2 + (n1 - 2) * (n2 - 2) - (n1 - 2)) / shell

    scores = evaluate_case(ref, pred, spacing)
    official = evaluate_case(ref, pred, spacing, official_spacing_order=True)
    assert scores["OveralDiceScore"] == pytest.approx((n0 - 1) / n0)
    assert scores["OveralASD"] == pytest.approx(expected)
    assert official["OveralASD"] == pytest.approx(expected_official)
    assert official["OveralDiceScore"] == scores["OveralDiceScore"]


def test_sphere_shifted_by_one_voxel_anisotropic():
    spacing = (2.0, 0.5, 0.8)
    ref = sphere((16, 24, 24), (8, 12, 12), 5) * 100
    pred = np.roll(ref, 1, axis=0)
    a, b = ref > 0, pred > 0
    scores = evaluate_case(ref, pred, spacing)
    official = evaluate_case(ref, pred, spacing, official_spacing_order=True)

    assert scores["DiceScoreSpinalCanal"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert scores["ASDSpinalCanal"] == pytest.approx(brute_force_asd(a, b, spacing))
    assert official["ASDSpinalCanal"] == pytest.approx(brute_force_asd(a, b, spacing[::-1]))
    assert official["ASDSpinalCanal"] < 0.9 * scores["ASDSpinalCanal"]  # the official number is off
    assert scores["ClassDiceSpinalCanal"] == scores["DiceScoreSpinalCanal"]


def test_identical_masks_score_perfectly():
    ref = spine()
    scores = evaluate_case(ref, ref, (3.0, 0.5, 0.5))
    assert set(scores) == set(METRICS)
    for key, value in scores.items():
        assert value == (0.0 if "ASD" in key or key in INSTANCE_KEYS else 1.0), key


def test_structure_below_dice_threshold_is_missed():
    ref = spine()
    pred = ref.copy()
    pred[pred == 2] = 0
    pred[1, 10, 2:4] = 2  # 2 of vertebra 2's 320 voxels: Dice ~ 0.012
    scores = evaluate_case(ref, pred, (1.0, 1.0, 1.0))
    low = 2 * 2 / (320 + 2)

    assert scores["DiceScoreVertebrae"] == 1.0  # only the detected vertebra counts
    assert scores["DetectionRateVertebrae"] == 0.5
    assert scores["DetectionRateDiscs"] == 1.0
    assert scores["OveralDiceScore"] == pytest.approx((4 + low) / 5)
    assert math.isfinite(scores["ASDVertebrae"]) and scores["ASDVertebrae"] > 0  # matched, so it has an ASD


def test_structure_without_overlap_has_no_asd():
    ref = spine()
    pred = np.where(ref == 201, 0, ref)
    scores = evaluate_case(ref, pred, (1.0, 1.0, 1.0))
    assert scores["DetectionRateDiscs"] == 0.0
    assert math.isnan(scores["DiceScoreDiscs"])  # no detected disc: mean Dice undefined
    assert math.isnan(scores["ASDDiscs"]) and math.isnan(scores["OveralASD"])  # NaN propagates, as officially
    assert scores["ASDVertebrae"] == 0.0


def test_relabelled_prediction_scores_the_same():
    ref = spine()
    pred = np.roll(ref, 1, axis=1)
    permuted = np.zeros_like(pred)
    for old, new in {1: 230, 2: 17, 102: 5, 201: 100, 100: 3}.items():
        permuted[pred == old] = new
    original = evaluate_case(ref, pred, (2.0, 0.7, 0.7))
    relabelled = evaluate_case(ref, permuted, (2.0, 0.7, 0.7))
    for key in OFFICIAL_KEYS:
        assert relabelled[key] == pytest.approx(original[key]), key


def test_partial_vertebrae_count_only_overall():
    ref = spine()
    pred = np.where(ref == 102, 0, ref)
    scores = evaluate_case(ref, pred, (1.0, 1.0, 1.0))
    assert scores["DiceScoreVertebrae"] == 1.0
    assert scores["DetectionRateVertebrae"] == 1.0
    assert scores["OveralDiceScore"] == pytest.approx(4 / 5)
    assert scores["ClassDiceVertebrae"] < 1.0  # 101-125 are vertebrae at class level
    assert math.isnan(scores["OveralASD"])


def test_fused_labels_count_one_label_over_two_levels():
    ref = spine()
    assert evaluate_case(ref, ref, (1.0, 1.0, 1.0), surface=False)["FusedLabels"] == 0
    pred = ref.copy()
    pred[(ref == 2) | (ref == 201)] = 2  # vertebra 2 and its disc in one label
    assert evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False)["FusedLabels"] == 1
    pred[ref == 1] = 2  # three levels, still one fused label
    pred[ref == 102] = 5
    assert evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False)["FusedLabels"] == 1
    pred = ref.copy()
    pred[1:2, 18:21, 2:12] = 2  # a quarter of the disc taken by the vertebra above: not fused
    assert evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False)["FusedLabels"] == 0


def test_stray_components_count_predictions_touching_no_reference():
    ref = spine((6, 40, 30))
    pred = ref.copy()
    assert evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False)["StrayComponents"] == 0
    pred[0:2, 32:36, 24:28] = 3  # a vertebra blob far from the spine
    pred[4:6, 2:4, 26:29] = 205  # a disc blob
    pred[0, 38, 0] = 3  # same value, another component
    pred[5, 36:38, 20:22] = 100  # canal blobs are not counted
    scores = evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False)
    assert scores["StrayComponents"] == 3
    assert scores["FusedLabels"] == 0
    pred[0:2, 28:33, 11:25] = 3  # the first blob now reaches into vertebra 1: it touches a reference structure
    assert evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False)["StrayComponents"] == 2


def test_far_stray_components_are_measured_in_mm():
    ref = np.zeros((3, 40, 40), np.uint8)
    ref[:, 10:20, 10:20] = 1
    pred = ref.copy()
    pred[1, 10:14, 23:26] = 2  # 4 voxels right of vertebra 1
    pred[1, 30:33, 30:33] = 201  # 11 voxels below and right of it
    near = evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False)
    assert near["StrayComponents"] == 2 and near["StrayComponentsFar"] == 1
    far = evaluate_case(ref, pred, (1.0, 2.0, 2.0), surface=False)  # 2 mm pixels: 8 mm and 31 mm away
    assert far["StrayComponents"] == 2 and far["StrayComponentsFar"] == 2


def test_class_dice_and_surface_switch():
    ref = spine()
    pred = ref.copy()
    pred[pred == 201] = 2  # disc predicted as vertebra
    dice = class_dice(ref, pred)
    disc_voxels = (ref == 201).sum()
    vert_voxels = np.isin(ref, [1, 2, 102]).sum()
    assert dice["ClassDiceDiscs"] == 0.0
    assert dice["ClassDiceSpinalCanal"] == 1.0
    assert dice["ClassDiceVertebrae"] == pytest.approx(2 * vert_voxels / (2 * vert_voxels + disc_voxels))
    assert not set(ASD_KEYS) & set(evaluate_case(ref, pred, (1.0, 1.0, 1.0), surface=False))
    assert math.isnan(class_dice(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)))["ClassDiceDiscs"])


def write_mask(path: Path, array: np.ndarray, spacing=(0.6, 0.6, 3.0)) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def test_cli_writes_json_csv_and_reports_missing(tmp_path, capsys):
    refs, preds = tmp_path / "ref", tmp_path / "pred"
    refs.mkdir(), preds.mkdir()
    ref = spine()
    write_mask(refs / "a.mha", ref)
    write_mask(refs / "b.nii.gz", ref)
    write_mask(preds / "a.mha", np.roll(ref, 1, axis=2))
    write_mask(preds / "extra.mha", ref)

    code = main([str(refs), str(preds), "--json", str(tmp_path / "out" / "m.json"), "--csv", str(tmp_path / "m.csv")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "b: no prediction" in err and "1 prediction(s) without reference" in err
    assert "DiceScoreVertebrae" in out and "2 case(s) evaluated" in out

    summary = json.loads((tmp_path / "out" / "m.json").read_text())
    assert set(summary["cases"]) == {"a", "b"}
    assert summary["missing_predictions"] == ["b"] and summary["ignored_predictions"] == ["extra"]
    assert summary["cases"]["b"]["DetectionRateVertebrae"] == 0.0
    assert summary["cases"]["b"]["OveralDiceScore"] == 0.0
    assert summary["cases"]["b"]["ASDVertebrae"] is None  # NaN in JSON
    assert summary["mean"]["DetectionRateVertebrae"] == 0.5
    assert summary["std"]["DetectionRateVertebrae"] == pytest.approx(math.sqrt(0.5))

    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [row["case"] for row in rows] == ["a", "b"]
    assert rows[1]["status"] == "missing prediction" and rows[1]["ASDVertebrae"] == ""
    assert float(rows[0]["OveralDiceScore"]) == pytest.approx(summary["cases"]["a"]["OveralDiceScore"])


def test_cli_bad_files_give_one_line_errors(tmp_path, capsys):
    refs, preds = tmp_path / "ref", tmp_path / "pred"
    refs.mkdir(), preds.mkdir()
    (refs / "broken.mha").write_text("not an image")
    write_mask(refs / "grid.mha", spine())
    write_mask(preds / "grid.mha", spine(), spacing=(0.6, 0.6, 4.0))

    assert main([str(refs), str(preds)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert any("broken.mha: cannot read image" in line for line in err)
    assert any("spacing" in line and "grid.mha" in line for line in err)
    assert err[-1] == "spider-evaluate: error: no case could be evaluated"
    assert main([str(tmp_path / "nowhere"), str(preds)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_real_masks_against_themselves(tmp_path):
    masks = sorted(shared_data("spider-t2space/masks").glob("*.mha"))[:1]
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        for path in masks:
            (tmp_path / folder / path.name).symlink_to(path)
    summary = evaluate_dirs(tmp_path / "ref", tmp_path / "pred", progress=False)
    assert len(summary["cases"]) == 1 and not summary["errors"]
    for key, mean in summary["mean"].items():
        assert mean == (0.0 if "ASD" in key or key in INSTANCE_KEYS else 1.0), key


def test_real_mask_relabelled_still_perfect():
    import SimpleITK as sitk

    path = sorted(shared_data("spider-t2space/masks").glob("*.mha"))[0]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    values = np.unique(ref)
    lut = np.zeros(ref.max() + 1, np.int16)
    lut[values] = np.r_[0, np.random.default_rng(0).permutation(np.arange(1, values.size)) * 7]
    scores = evaluate_case(ref, lut[ref], (0.9, 0.47, 0.47), surface=False)
    assert all(scores[key] == 1.0 for key in DICE_KEYS)
