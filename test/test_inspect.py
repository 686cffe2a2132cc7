"""spider-inspect on small synthetic SPIDER-layout folders (and two real masks when present)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from algorithm.geometry import orientation
from spider_tools.inspect_data import inspect_dataset, inspect_file, main, orientation_code, parse_name
from conftest import shared_data

sitk = pytest.importorskip("SimpleITK")

LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # sagittal axis = ITK x
PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # x posterior, y inferior, z right
SPACING = (3.0, 0.8, 0.7)  # canonical (R-L, S-I, A-P) mm
SHAPE = (6, 48, 32)  # canonical (sagittal slices, S-I rows, A-P columns)


def spine(convention: str, partial: bool = False) -> np.ndarray:
    """Canonical mask: 4 vertebrae stacked top to bottom with discs between, canal behind them."""
    mask = np.zeros(SHAPE, dtype=np.int16)
    mask[1:5, 2:46, 22:26] = 100
    # rows from superior (top) to inferior (bottom); bottom-up numbering: lowest vertebra = 1
    numbers = [4, 3, 2, 1] if convention == "bottom-up" else [21, 22, 23, 24]
    for n, (top, value) in enumerate(zip(range(4, 44, 10), numbers)):
        mask[1:5, top : top + 7, 6:20] = value
        if n < 3:  # in both conventions the disc below vertebra k is 200 + k
            mask[1:5, top + 7 : top + 10, 7:19] = 200 + value
    if partial:
        mask[1:5, 0:2, 6:20] = 105
    return mask


def write_volume(path, canonical: np.ndarray, direction=LPS, spacing=SPACING) -> None:
    """Write a canonical-layout array as an ITK file with the given direction cosines."""
    orient = orientation(direction, (1.0, 1.0, 1.0))
    itk_spacing = [0.0] * 3
    for axis, numpy_axis in enumerate(orient.axes):
        itk_spacing[2 - numpy_axis] = spacing[axis]
    image = sitk.GetImageFromArray(orient.from_canonical(canonical))
    image.SetDirection(direction)
    image.SetSpacing(itk_spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def write_case(root, name, mask, direction=LPS, image=True) -> None:
    """Image (a smooth function of the mask) and mask of one case in SPIDER layout."""
    if image:
        rng = np.random.default_rng(0)
        write_volume(root / "images" / f"{name}.mha", ((mask > 0) * 300 + rng.integers(0, 50, mask.shape)).astype(np.int16), direction)
    write_volume(root / "masks" / f"{name}.mha", mask, direction)


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    write_case(root, "1_t1", spine("bottom-up", partial=True))
    write_case(root, "2_t2", spine("top-down"), PIR)
    write_case(root, "3_t2_SPACE", spine("bottom-up"))
    (root / "overview.csv").write_text("new_file_name,subset\n1_t1,training\n2_t2,validation\n3_t2_SPACE,training\n")
    return root


def test_parse_name_and_orientation_code():
    assert parse_name("12_t2_SPACE") == ("12", "t2_SPACE")
    assert parse_name("7_t1") == ("7", "t1")
    assert parse_name("scan") == ("scan", None)
    assert orientation_code(orientation(LPS, (1, 1, 1))) == "LPS"
    assert orientation_code(orientation(PIR, (1, 1, 1))) == "PIR"


def test_counts_geometry_and_labels(dataset, tmp_path):
    summary = inspect_dataset(dataset, tmp_path / "report", dpi=40)
    assert summary["layout"] == "spider"
    assert summary["sequences"] == {"t1": 1, "t2": 1, "t2_SPACE": 1}
    assert summary["subsets"] == {"training": 2, "validation": 1}
    assert summary["flagged"] == 0
    cases = {c["name"]: c for c in summary["cases"]}
    assert [cases[n]["labels"]["convention"] for n in ("1_t1", "2_t2", "3_t2_SPACE")] == ["bottom-up", "top-down", "bottom-up"]
    assert (cases["1_t1"]["orientation"], cases["1_t1"]["sagittal_axis"]) == ("LPS", "x")
    assert (cases["2_t2"]["orientation"], cases["2_t2"]["sagittal_axis"]) == ("PIR", "z")
    for case in cases.values():
        assert case["slices"] == SHAPE[0]
        assert case["slice_spacing"] == pytest.approx(SPACING[0])
        assert case["inplane_spacing"] == pytest.approx(list(SPACING[1:]))
        assert case["inplane_size"] == list(SHAPE[1:])
        assert (case["labels"]["vertebrae"], case["labels"]["discs"]) == (4, 3)
        assert case["labels"]["canal"]
        assert case["intensity"]["dtype"] == "int16"
    assert cases["1_t1"]["labels"]["partial_vertebrae"] == 1
    assert summary["per_sequence"]["t1"]["files_with_partial_vertebrae"] == 1
    canal_ml = 4 * 44 * 4 * np.prod(SPACING) / 1000
    assert cases["2_t2"]["labels"]["volumes_ml"]["100"] == pytest.approx(canal_ml, abs=1e-3)
    assert cases["2_t2"]["labels"]["class_volumes_ml"]["canal"] == pytest.approx(canal_ml, abs=1e-3)


def test_outputs_written(dataset, tmp_path):
    out = tmp_path / "report"
    assert main([str(dataset), "--out", str(out), "--example", "2_t2", "--dpi", "40"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    expected = {"geometry", "intensity", "labels", "examples", "three_axes_2_t2"}
    assert set(summary["figures"]) == expected
    for file in summary["figures"].values():
        assert (out / file).read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "--example 2_t2" in report and "None found." in report
    assert all(f"({file})" in report for file in summary["figures"].values())


def test_flags_bad_file_grid_mismatch_and_bad_label(dataset, tmp_path):
    (dataset / "images" / "4_t2.mha").write_bytes(b"not an image")
    write_volume(dataset / "masks" / "4_t2.mha", spine("bottom-up"))
    write_volume(dataset / "images" / "5_t2.mha", spine("bottom-up"), spacing=(3.0, 0.8, 0.9))
    write_volume(dataset / "masks" / "5_t2.mha", spine("bottom-up"))
    bad = spine("bottom-up")
    bad[0, 0, 0] = 77
    write_case(dataset, "6_t2", bad)
    write_volume(dataset / "masks" / "7_t1.mha", spine("bottom-up"))  # no image
    summary = inspect_dataset(dataset, tmp_path / "report", dpi=40)
    flags = {c["name"]: " ".join(c["flags"]) for c in summary["cases"]}
    assert "unreadable" in flags["4_t2"] and "4_t2.mha" in flags["4_t2"]
    assert "grids differ" in flags["5_t2"] and "spacing" in flags["5_t2"]
    assert "outside the SPIDER scheme: 77" in flags["6_t2"]
    assert "no image" in flags["7_t1"]
    assert not any(flags[n] for n in ("1_t1", "2_t2", "3_t2_SPACE"))
    assert summary["flagged"] == 4
    cases = {c["name"]: c for c in summary["cases"]}
    assert cases["4_t2"]["labels"]["vertebrae"] == 4  # the mask is still inspected
    report = (tmp_path / "report" / "report.md").read_text()
    assert "`6_t2`: labels outside the SPIDER scheme: 77" in report


def test_masks_only_folder(tmp_path):
    folder = tmp_path / "masks"
    write_volume(folder / "8_t2.mha", spine("top-down"), PIR)
    write_volume(folder / "9_t1.mha", spine("bottom-up"))
    summary = inspect_dataset(folder, tmp_path / "report", per_sequence=1, dpi=40)
    assert summary["layout"] == "masks-only"
    assert summary["flagged"] == 0
    assert [c["labels"]["convention"] for c in summary["cases"]] == ["top-down", "bottom-up"]
    assert "intensity" not in summary["figures"]
    assert {"three_axes_9_t1", "three_axes_8_t2", "examples"} <= set(summary["figures"])


@pytest.mark.parametrize("args", [["{tmp}/missing"], ["{tmp}"], ["{data}", "--example", "99_t1"]])
def test_cli_errors_are_one_line(args, dataset, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path / "empty", data=dataset) for a in args] + ["--out", str(tmp_path / "r")]
    (tmp_path / "empty").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spider-inspect: error:") and "\n" not in err


def test_real_masks_conventions_and_axis_order():
    folder = shared_data("spider-masks")
    top_down = inspect_file("18_t2", None, folder / "18_t2.mha", None, "masks-only")
    bottom_up = inspect_file("4_t1", None, folder / "4_t1.mha", None, "masks-only")
    assert (top_down["orientation"], top_down["sagittal_axis"], top_down["labels"]["convention"]) == ("PIR", "z", "top-down")
    assert (bottom_up["orientation"], bottom_up["sagittal_axis"], bottom_up["labels"]["convention"]) == ("LPS", "x", "bottom-up")
    assert top_down["slice_spacing"] == pytest.approx(3.3)
    assert not top_down["flags"] and not bottom_up["flags"]


def test_synthetic_dataset_any_axis_order(tmp_path):
    from spider_tools.synthetic import write_spider_dataset

    root = write_spider_dataset(tmp_path / "synthetic", 3, seed=1, max_size=80).parent
    summary = inspect_dataset(root, tmp_path / "report", per_sequence=1, dpi=40)
    assert summary["files"] == 3 and summary["flagged"] == 0
    assert sum(summary["subsets"].values()) == 3 and "none" not in summary["subsets"]
    for case in summary["cases"]:
        assert 3.3 <= case["slice_spacing"] <= 4.8  # the sagittal axis is found whatever the axis order
        assert all(0.33 <= s <= 0.9 for s in case["inplane_spacing"])
        assert case["labels"]["vertebrae"] >= 2 and case["labels"]["convention"] == "bottom-up"
