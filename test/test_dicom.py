"""DICOM series input: the volume's grid comes from the slice positions, non-sagittal series are
skipped with the reason, broken series get one line naming them and no output, and a case read
from DICOM gives the same mask as the same case read from .mha. Series are what exports hold:
split over folders, several stacks under one UID, one file given, the pixel spacing only as
ImagerPixelSpacing or not at all, enhanced multi-frame files (the last written with pydicom)."""

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


def break_pixel_spacing(files: list[Path], tmp: Path) -> None:
    """No PixelSpacing in any file (nor ImagerPixelSpacing): GDCM would read 1.0 mm."""
    pydicom = pytest.importorskip("pydicom", reason="pydicom (extra 'dicom') writes the DICOM files of this test")
    for f in files:
        ds = pydicom.dcmread(f)
        del ds.PixelSpacing
        ds.save_as(f)


def break_enhanced(files: list[Path], tmp: Path) -> None:
    """One file of the series replaced by an enhanced MR file (positions only in its functional groups)."""
    write_enhanced(files[1], find_series(files[0].parent)[0].uid)


def write_enhanced(path: Path, series_uid: str, frames: int = 5) -> None:
    """An Enhanced MR Image file of ``frames`` sagittal frames, its plane positions, orientation and
    pixel spacing only in the functional group sequences (no top-level ImagePositionPatient)."""
    pydicom = pytest.importorskip("pydicom", reason="pydicom (extra 'dicom') writes the DICOM files of this test")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    enhanced_mr = "1.2.840.10008.5.1.4.1.1.4.1"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID, ds.file_meta.MediaStorageSOPClassUID = ExplicitVRLittleEndian, enhanced_mr
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = enhanced_mr, generate_uid(), series_uid, generate_uid()
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "MR", 6, "broken"
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 56, frames, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SharedFunctionalGroupsSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [0.9, 0.8]
    ds.PerFrameFunctionalGroupsSequence = [Dataset() for _ in range(frames)]
    for k, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        group.PlanePositionSequence = [Dataset()]
        group.PlanePositionSequence[0].ImagePositionPatient = [3.5 * k, 0, 0]
    ds.PixelData = np.zeros((frames, 64, 56), np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


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
        (break_multiframe, "006-0002.dcm: a multi-frame (enhanced) DICOM file with 12 frames"),
        (break_enhanced, "006-0002.dcm: a multi-frame (enhanced) DICOM file with 5 frames"),
        (break_pixel_spacing, "006-0001.dcm has neither PixelSpacing nor ImagerPixelSpacing: the pixel size in mm is unknown"),
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
    from algorithm.pipeline import Models, segment_file

    src = shared_data("spider-t2space") / "images" / "50_t2_SPACE.mha"
    image = sitk.ReadImage(str(src))
    write_dicom_series(image, tmp_path / "dicom", 1, "t2 space")
    (series,) = find_series(tmp_path / "dicom")
    segmenter = Models()
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


def test_enhanced_file_alone_is_refused_by_its_own_message(tmp_path, tiny_model_dir, caplog):
    (tmp_path / "in").mkdir()
    write_enhanced(tmp_path / "in" / "enhanced.dcm", "1.2.3.4")
    assert segment(tmp_path / "in", tmp_path / "out", tiny_model_dir) == 1
    error = errors(caplog)[0]
    assert "enhanced.dcm: a multi-frame (enhanced) DICOM file with 5 frames" in error and "ImagePositionPatient" not in error, error
    assert not (tmp_path / "out").exists()


def test_series_split_over_two_folders_is_one_volume_with_the_mask_of_the_mha(tmp_path, tiny_model_dir):
    image = case("PIR", seed=3)
    files = write_dicom_series(image, tmp_path / "in" / "DICOM" / "0001", 2, "case")
    (tmp_path / "in" / "DICOM" / "0002").mkdir()
    for f in files[1::2]:
        f.rename(tmp_path / "in" / "DICOM" / "0002" / f.name)
    (tmp_path / "mha").mkdir()
    sitk.WriteImage(sitk.Cast(as_stack(image), sitk.sitkInt16), str(tmp_path / "mha" / "case.mha"))  # the DICOM files hold int16
    (series,) = find_series(tmp_path / "in")
    assert len(series.slices) == len(files) and series.folder == tmp_path / "in" / "DICOM"
    assert segment(tmp_path / "in", tmp_path / "out", tiny_model_dir) == 0
    assert segment(tmp_path / "mha", tmp_path / "out_mha", tiny_model_dir) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2_case.mha"]
    from_dicom, from_mha = (sitk.ReadImage(str(p)) for p in (tmp_path / "out" / "2_case.mha", tmp_path / "out_mha" / "case.mha"))
    assert same_grid(from_dicom, from_mha)
    labels = sitk.GetArrayViewFromImage(from_dicom)
    assert labels.any() and np.array_equal(labels, sitk.GetArrayViewFromImage(from_mha))


@pytest.mark.parametrize("tags, names", [
    ({"0008|0008": ["ORIGINAL\\PRIMARY\\M\\DIXON\\W", "ORIGINAL\\PRIMARY\\M\\DIXON\\F"]}, ["5_dixon_F", "5_dixon_W"]),
    ({"0018|0086": ["1", "2"]}, ["5_dixon_echo1", "5_dixon_echo2"]),
])
def test_stacks_sharing_one_series_uid_become_one_volume_each(tmp_path, tiny_model_dir, tags, names):
    """Dixon water/fat images (ImageType) or two echoes (EchoNumbers) under one SeriesInstanceUID."""
    (tag, values), uid = next(iter(tags.items())), "2.25.1234"
    for k, value in enumerate(values):
        write_dicom_series(case("LPS", seed=k), tmp_path / "in" / f"stack{k}", 5, "dixon", uid=uid, tags={tag: value})
    assert [s.name for s in find_series(tmp_path / "in")] == names
    assert segment(tmp_path / "in", tmp_path / "out", tiny_model_dir) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{n}.mha" for n in names]


def test_one_dicom_file_reads_its_series_from_its_folder(tmp_path, tiny_model_dir, caplog):
    image = case("LPS")
    files = write_dicom_series(image, tmp_path / "in", 3, "wanted")
    write_dicom_series(case("LPS", seed=1), tmp_path / "in", 4, "beside")
    write_dicom_series(image, tmp_path / "in" / "sub", 5, "below")
    assert segment(files[4], tmp_path / "out", tiny_model_dir) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["3_wanted.mha"]
    out = sitk.ReadImage(str(tmp_path / "out" / "3_wanted.mha"))
    assert same_grid(out, as_stack(image))


def test_imager_pixel_spacing_is_used_where_pixel_spacing_is_absent(tmp_path):
    pydicom = pytest.importorskip("pydicom", reason="pydicom (extra 'dicom') writes the DICOM files of this test")
    for f in write_dicom_series(case("PIR"), tmp_path, 2, "w"):
        ds = pydicom.dcmread(f)
        ds.ImagerPixelSpacing = ds.PixelSpacing
        del ds.PixelSpacing
        ds.save_as(f)
    (series,) = find_series(tmp_path)
    assert series.read().GetSpacing() == pytest.approx((0.8, 0.9, 3.5))
