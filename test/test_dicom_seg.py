"""DICOM SEG output (--format dicom-seg): read back with highdicom it is the .mha mask voxel for
voxel, it references the source series and instances, its segments carry SPIDER names and SNOMED
CT codes, dciodvfy (Debian's dicom3tools) finds no error in it, and it is refused for non-DICOM input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cli import main
from algorithm.dicom import DicomSeries, find_series
from algorithm.labels import CANAL_LABEL
from spider_tools.synthetic import write_dicom_series

from test_dicom import as_stack, case, errors, same_grid

hd = pytest.importorskip("highdicom", reason="highdicom (extra 'dicom': pip install -e '.[dicom]') writes and reads DICOM SEG")
pydicom = pytest.importorskip("pydicom", reason="pydicom (extra 'dicom') reads DICOM SEG")

CASE_50 = Path(__file__).parent / "cases" / "spider-50-t2space"
CODES = {"vertebra": ("51282000", "Vertebra"), "disc": ("360499006", "Intervertebral disc"), "spinal": ("61853006", "Spinal canal")}


def read_seg(path: Path, series: DicomSeries) -> np.ndarray:
    """The SPIDER mask a SEG holds, on the series' slices in stack order (values from the segment names)."""
    seg = hd.seg.segread(path)
    ordered, _ = series.stack()
    uids = [pydicom.dcmread(s.path, stop_before_pixels=True).SOPInstanceUID for s in ordered]
    numbers = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    values = [CANAL_LABEL if d.SegmentLabel == "spinal canal" else int(d.SegmentLabel.split()[1]) for d in seg.SegmentSequence]
    return np.array([0, *values], dtype=np.int16)[numbers]


def validate(path: Path) -> list[str]:
    """dciodvfy's error lines for a DICOM file (skip when dicom3tools is not installed)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not found (Debian: apt-get install dicom3tools)")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def segment(src: Path, out: Path, *extra: str) -> int:
    return main(["-i", str(src), "-o", str(out), *extra])


def test_seg_reads_back_as_the_mha_and_references_its_source(tmp_path, tiny_model_dir):
    files = write_dicom_series(case("PIR", seed=2), tmp_path / "in", 2, "case")
    (series,) = find_series(tmp_path / "in")
    assert segment(tmp_path / "in", tmp_path / "seg", "--model", str(tiny_model_dir), "--format", "dicom-seg") == 0
    assert segment(tmp_path / "in", tmp_path / "mha", "--model", str(tiny_model_dir)) == 0
    assert sorted(p.name for p in (tmp_path / "seg").iterdir()) == ["2_case.dcm"]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mha" / "2_case.mha")))
    assert mask.any() and np.array_equal(read_seg(tmp_path / "seg" / "2_case.dcm", series), mask)
    seg = pydicom.dcmread(tmp_path / "seg" / "2_case.dcm")
    (referenced,) = seg.ReferencedSeriesSequence
    sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert referenced.SeriesInstanceUID == series.uid and {r.ReferencedSOPInstanceUID for r in referenced.ReferencedInstanceSequence} <= sources
    assert seg.SegmentationType == "BINARY" and seg.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID
    for d in seg.SegmentSequence:
        (kind,), (category,) = d.SegmentedPropertyTypeCodeSequence, d.SegmentedPropertyCategoryCodeSequence
        assert (kind.CodingSchemeDesignator, category.CodeValue) == ("SCT", "91723000")
        assert (kind.CodeValue, kind.CodeMeaning) == CODES[d.SegmentLabel.split()[0]], d.SegmentLabel


def test_seg_needs_dicom_input(tmp_path, tiny_model_dir, caplog):
    (tmp_path / "in").mkdir()
    sitk.WriteImage(case("LPS"), str(tmp_path / "in" / "case.mha"))
    assert segment(tmp_path / "in", tmp_path / "out", "--model", str(tiny_model_dir), "--format", "dicom-seg") == 2
    (error,) = errors(caplog)
    assert "--format dicom-seg needs DICOM input" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def case_50(tmp_path_factory) -> tuple[DicomSeries, sitk.Image]:
    """The bundled real case 50 (T2-SPACE) written as a DICOM series, and its reference mask on the series' grid."""
    image = sitk.ReadImage(str(CASE_50 / "input" / "images" / "sagittal-spine-mri" / "50_t2_SPACE.mha"))
    folder = tmp_path_factory.mktemp("case50") / "dicom"
    write_dicom_series(image, folder, 1, "t2 space")
    (series,) = find_series(folder)
    return series, as_stack(sitk.Cast(sitk.ReadImage(str(CASE_50 / "truth" / "50_t2_SPACE.mha")), sitk.sitkInt16))


def test_real_reference_mask_as_seg_reads_back_identical_and_validates(case_50, tmp_path):
    from algorithm.dicom_seg import write_seg

    series, truth = case_50
    assert same_grid(series.read(), truth)
    mask = sitk.GetArrayFromImage(truth)
    write_seg(mask, series, tmp_path / "50.dcm")
    assert np.array_equal(read_seg(tmp_path / "50.dcm", series), mask)
    names = [d.SegmentLabel for d in pydicom.dcmread(tmp_path / "50.dcm", stop_before_pixels=True).SegmentSequence]
    assert len(names) == len(np.unique(mask)) - 1 and "spinal canal" in names
    assert validate(tmp_path / "50.dcm") == []


def test_real_case_segmented_as_seg_is_its_mha_mask_and_validates(case_50, tmp_path):
    """The bundled model on case 50 from DICOM: the SEG holds exactly the mask of the .mha output."""
    series, _ = case_50
    assert segment(series.folder, tmp_path / "seg", "--format", "dicom-seg") == 0
    assert segment(series.folder, tmp_path / "mha") == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mha" / "1_t2_space.mha")))
    assert np.array_equal(read_seg(tmp_path / "seg" / "1_t2_space.dcm", series), mask)
    assert validate(tmp_path / "seg" / "1_t2_space.dcm") == []
