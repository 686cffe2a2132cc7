"""DICOM series input: the volume's grid comes from the slice positions, non-sagittal series are
skipped with the reason, broken series get one line naming them and no output, and a case read
from DICOM gives the same mask as the same case read from .mha."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cli import main
from algorithm.dicom import find_series
from spider_tools.synthetic import synthesize, write_dicom_series

from conftest import shared_data

PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # ITK x posterior, y inferior, z right
GEOMETRIES = {
    "LPS": {"size": (12, 64, 56), "spacing": (3.5, 0.9, 0.8), "direction": None},
    "PIR": {"size": (56, 64, 12), "spacing": (0.8, 0.9, 3.5), "direction": PIR},
}
ORIGIN = (10.5, -20.25, 30.125)


def case(geometry: str, seed: int = 0) -> sitk.Image:
    return synthesize(**GEOMETRIES[geometry], seed=seed, origin=ORIGIN)[0]


def as_stack(image: sitk.Image) -> sitk.Image:
    """The image with its sagittal axis last (cyclic permutation, as write_dicom_series slices it)."""
    axis = int(np.argmax(np.abs(np.asarray(image.GetDirection()).reshape(3, 3)[0])))
    return sitk.PermuteAxes(image, [(axis + 1) % 3, (axis + 2) % 3, axis])


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


def segment(src: Path, out: Path, model: Path, *extra: str) -> int:
    return main(["-i", str(src), "-o", str(out), "--model", str(model), *extra])


def errors(caplog, level: str = "ERROR") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == level]


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_series_read_on_the_grid_of_its_slices(tmp_path, geometry):
    image = case(geometry)
    files = write_dicom_series(image, tmp_path / "dicom", 7, "T2 sag/TSE")
    np.random.default_rng(0).shuffle(files)  # file names say nothing: order comes from positions
    for i, f in enumerate(files):
        f.rename(f.with_name(f"x{i:03d}.dcm"))
    (series,) = find_series(tmp_path)
    assert series.name == "7_T2_sag_TSE" and series.skip_reason() is None
    volume, expected = series.read(), as_stack(image)
    assert same_grid(volume, expected)
    assert np.array_equal(sitk.GetArrayViewFromImage(volume), sitk.GetArrayViewFromImage(expected))


def test_folder_of_series_segments_sagittal_skips_others(tmp_path, tiny_model_dir, caplog):
    lps, pir = case("LPS"), case("PIR", seed=1)
    write_dicom_series(lps, tmp_path / "in" / "study" / "s3", 3, "T2 sag")
    write_dicom_series(pir, tmp_path / "in" / "study" / "s5", 5, "T1 sag")
    write_dicom_series(lps, tmp_path / "in" / "study" / "s4", 4, "T2 ax", axis=2)
    write_dicom_series(lps[:, :, :3], tmp_path / "in" / "study" / "s1", 1, "t", axis=2, image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_dicom_series(lps[:4], tmp_path / "in" / "study" / "s2", 2, "AAHead_Scout")  # sagittal, but a scout by name
    assert segment(tmp_path / "in", tmp_path / "out", tiny_model_dir, "--format", "nii.gz") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["3_T2_sag.nii.gz", "5_T1_sag.nii.gz"]
    for name, image in (("3_T2_sag", lps), ("5_T1_sag", pir)):
        out = sitk.ReadImage(str(tmp_path / "out" / f"{name}.nii.gz"))
        assert same_grid(out, as_stack(image)) and out.GetPixelID() == sitk.sitkInt16
    skipped = errors(caplog, "WARNING")
    assert any("4_T2_ax" in w and "axial" in w for w in skipped), skipped
    assert any("1_t" in w and "localiser (ImageType LOCALIZER)" in w for w in skipped), skipped
    assert any("2_AAHead_Scout" in w and "localiser (series description" in w for w in skipped), skipped
    assert not errors(caplog)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_dicom_gives_the_mask_of_the_mha(tmp_path, tiny_model_dir, geometry):
    image = case(geometry, seed=2)
    sitk.WriteImage(image, str(tmp_path / "mha" / "case.mha") if (tmp_path / "mha").mkdir() is None else "")
    write_dicom_series(image, tmp_path / "dicom", 2, "case")
    assert segment(tmp_path / "mha", tmp_path / "out_mha", tiny_model_dir) == 0
    assert segment(tmp_path / "dicom", tmp_path / "out_dicom", tiny_model_dir) == 0
    from_dicom = sitk.ReadImage(str(tmp_path / "out_dicom" / "2_case.mha"))
    from_mha = sitk.ReadImage(str(tmp_path / "out_mha" / "case.mha"))
    assert same_grid(from_dicom, as_stack(image))
    assert agreement(from_dicom, from_mha) >= 0.99


def agreement(on_grid: sitk.Image, other: sitk.Image) -> float:
    """Share of voxels labelled in either mask whose labels are identical, after moving ``other``
    onto ``on_grid``'s grid (same physical voxels, maybe another axis order): nearest neighbour."""
    moved = sitk.Resample(other, on_grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, other.GetPixelID())
    a, b = sitk.GetArrayViewFromImage(on_grid), sitk.GetArrayViewFromImage(moved)
    labelled = (a > 0) | (b > 0)
    return float((a[labelled] == b[labelled]).mean()) if labelled.any() else 1.0


def rewrite(path: Path, shift_mm: float = 0.0) -> None:
    """Move one DICOM slice ``shift_mm`` along its normal, keeping its UIDs (the writer takes
    ImagePositionPatient from the tags read with the file, not from the origin)."""
    piece = sitk.ReadImage(str(path))
    d = np.asarray(piece.GetDirection()).reshape(3, 3)
    position = np.asarray(piece.GetOrigin()) + shift_mm * np.cross(d[:, 0], d[:, 1])
    piece.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(piece)


def break_missing(files: list[Path], tmp: Path) -> None:
    files[5].unlink()


def break_uneven(files: list[Path], tmp: Path) -> None:
    rewrite(files[5], 0.4 * 3.5)


def break_duplicate(files: list[Path], tmp: Path) -> None:
    rewrite(files[5], -3.5)


def break_mixed(files: list[Path], tmp: Path) -> None:
    uid = find_series(files[0].parent)[0].uid
    (axial,) = write_dicom_series(case("LPS")[:, :, 20:21], tmp / "axial", 6, "broken", axis=2, uid=uid)
    shutil.move(axial, files[0].parent / "extra.dcm")


def break_unreadable(files: list[Path], tmp: Path) -> None:
    """A truncated file: GDCM leaves it out of the series, which then has a gap."""
    data = files[5].read_bytes()
    files[5].write_bytes(data[: len(data) - 2000])


def break_multiframe(files: list[Path], tmp: Path) -> None:
    """Declare 12 frames in one file (an implicit-VR NumberOfFrames element before Rows), as an
    enhanced multi-frame file would; SimpleITK writes only single-frame files."""
    data = files[1].read_bytes()
    rows = data.find(b"\x28\x00\x10\x00\x02\x00\x00\x00")
    assert rows > 0
    files[1].write_bytes(data[:rows] + b"\x28\x00\x08\x00\x02\x00\x00\x0012" + data[rows:])


@pytest.mark.parametrize(
    "damage, message",
    [
        (break_missing, "missing slice: a gap of 7.00 mm"),
        (break_uneven, "uneven slice spacing"),
        (break_duplicate, "two slices at the same position"),
        (break_mixed, "mixed slice orientations (axial, sagittal)"),
        (break_unreadable, "(not readable as DICOM beside it: 006-0006.dcm)"),
        (break_multiframe, "006-0002.dcm is a multi-frame (enhanced) DICOM file with 12 frames"),
    ],
)
def test_broken_series_one_line_nothing_written_others_still_run(tmp_path, tiny_model_dir, caplog, damage, message):
    image = case("LPS")
    write_dicom_series(image, tmp_path / "in" / "good", 3, "good")
    damage(write_dicom_series(image, tmp_path / "in" / "broken", 6, "broken"), tmp_path)
    assert segment(tmp_path / "in", tmp_path / "out", tiny_model_dir) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["3_good.mha"]
    (error,) = [e for e in errors(caplog) if "6_broken" in e]
    assert message in error and "\n" not in error, error


def test_only_skipped_series_is_a_usage_error(tmp_path, tiny_model_dir, caplog):
    write_dicom_series(case("LPS"), tmp_path / "in", 4, "ax", axis=2)
    assert segment(tmp_path / "in", tmp_path / "out", tiny_model_dir) == 2
    assert any("none of its 1 DICOM series is a sagittal volume" in e for e in errors(caplog))
    assert not (tmp_path / "out").exists()


def test_same_description_twice_gets_two_names(tmp_path):
    write_dicom_series(case("PIR"), tmp_path / "a", 2, "sag")
    write_dicom_series(case("PIR"), tmp_path / "b", 2, "sag")
    names = [s.name for s in find_series(tmp_path)]
    assert len(set(names)) == 2 and all(n.startswith("2_sag_") for n in names)


def test_real_case_as_dicom_gives_the_mask_of_the_mha(tmp_path):
    """The bundled model on a real SPIDER T2-SPACE slab (uint8, written as an int16 DICOM series)."""
    from algorithm.pipeline import Segmenter, segment_file

    src = shared_data("spider-t2space") / "images" / "50_t2_SPACE.mha"
    image = sitk.ReadImage(str(src))
    write_dicom_series(image, tmp_path / "dicom", 1, "t2 space")
    (series,) = find_series(tmp_path / "dicom")
    segmenter = Segmenter.load()
    segment_file(src, tmp_path / "mha.mha", segmenter)
    segment_file(series, tmp_path / "dicom.mha", segmenter)
    from_dicom, from_mha = sitk.ReadImage(str(tmp_path / "dicom.mha")), sitk.ReadImage(str(tmp_path / "mha.mha"))
    assert same_grid(from_dicom, as_stack(image))
    assert agreement(from_dicom, from_mha) >= 0.99


def test_position_rounding_is_accepted_quietly(tmp_path, capfd):
    """A slice 0.02 mm off its place (0.6 % of the step) is within tolerance: read, and ITK's own
    multi-line non-uniform sampling warning is not printed."""
    files = write_dicom_series(case("PIR"), tmp_path, 2, "w")
    rewrite(files[4], 0.02)
    (series,) = find_series(tmp_path)
    assert series.read().GetSpacing() == pytest.approx((0.8, 0.9, 3.5))
    assert "WARNING" not in capfd.readouterr().err
