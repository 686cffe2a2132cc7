"""read_image turns every kind of bad input into a one-line InputError naming the file;
write_image is atomic and writes on the reference grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.io import InputError, read_image, stem, write_image


def scalar(size=(8, 32, 24), spacing=(4.0, 0.8, 0.9), dtype=np.int16, value=100) -> sitk.Image:
    image = sitk.GetImageFromArray(np.full(size[::-1], value, dtype=dtype))
    image.SetSpacing(spacing)
    image.SetOrigin((5.0, -7.0, 12.0))
    return image


def write(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def assert_input_error(path: Path, *words: str) -> None:
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message, message
    for word in words:
        assert word in message, message


def test_good_image_reads(tmp_path):
    image = read_image(write(scalar(), tmp_path / "good.mha"))
    assert image.GetSize() == (8, 32, 24) and image.GetSpacing() == (4.0, 0.8, 0.9)


def test_missing_file(tmp_path):
    assert_input_error(tmp_path / "missing.mha", "no such file")


def test_directory(tmp_path):
    (tmp_path / "folder.mha").mkdir()
    assert_input_error(tmp_path / "folder.mha", "not a file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mha").write_bytes(b"")
    assert_input_error(tmp_path / "empty.mha", "cannot read image")


def test_text_file(tmp_path):
    (tmp_path / "notes.mha").write_text("this is not an image\n")
    assert_input_error(tmp_path / "notes.mha", "cannot read image")


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_file(tmp_path, compress):
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(0, 1000, (8, 32, 32)).astype(np.int16))
    data = write(image, tmp_path / "full.mha", compress).read_bytes()
    (tmp_path / "half.mha").write_bytes(data[: len(data) // 2])
    assert_input_error(tmp_path / "half.mha", "cannot read image")
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "half.mha")
    assert "No such file" not in str(info.value)  # ITK's stale errno text is not the reason


def test_2d_image(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((64, 64), np.int16))
    assert_input_error(write(image, tmp_path / "flat.mha"), "2D")


def test_4d_image(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((2, 8, 32, 32), np.int16), isVector=False)
    assert image.GetDimension() == 4
    assert_input_error(write(image, tmp_path / "time.mha"), "4D")


def test_vector_image(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((8, 32, 32, 3), np.uint8), isVector=True)
    assert_input_error(write(image, tmp_path / "rgb.mha"), "vector")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_image(tmp_path, bad):
    array = np.ones((8, 32, 32), np.float32)
    array[4, 10, 10] = bad
    assert_input_error(write(sitk.GetImageFromArray(array), tmp_path / "nan.mha"), "NaN")


@pytest.mark.parametrize("spacing", [(0.001, 0.8, 0.8), (4.0, 100.0, 0.8)])
def test_absurd_spacing(tmp_path, spacing):
    assert_input_error(write(scalar(spacing=spacing), tmp_path / "spacing.mha"), "spacing")


@pytest.mark.parametrize("size", [(8, 8, 64), (1, 12, 200)])
def test_too_small(tmp_path, size):
    assert_input_error(write(scalar(size=size), tmp_path / "small.mha"), "too small")


def test_float_and_uint8_images_read(tmp_path):
    for dtype in (np.float32, np.uint8):
        assert read_image(write(scalar(dtype=dtype), tmp_path / f"{np.dtype(dtype).name}.mha")).GetSize() == (8, 32, 24)


@pytest.mark.parametrize("name", ["out.mha", "out.nii.gz", "out.nrrd"])
def test_write_on_reference_grid(tmp_path, name):
    reference = scalar(dtype=np.uint8)
    reference.SetDirection((0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    labels = np.random.default_rng(1).integers(0, 210, (24, 32, 8)).astype(np.int16)
    path = write_image(labels, reference, tmp_path / "sub" / name)
    out = sitk.ReadImage(str(path))
    assert out.GetPixelID() == sitk.sitkInt16 and np.array_equal(sitk.GetArrayViewFromImage(out), labels)
    assert out.GetSize() == reference.GetSize()
    assert np.allclose(out.GetSpacing(), reference.GetSpacing())
    assert np.allclose(out.GetOrigin(), reference.GetOrigin())
    assert np.allclose(out.GetDirection(), reference.GetDirection())
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temporary left behind


def test_write_failure_leaves_no_file(tmp_path, monkeypatch):
    def broken_writer(image, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")  # half-written, then the disk fills up
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", broken_writer)
    target = tmp_path / "out.mha"
    with pytest.raises(RuntimeError):
        write_image(np.zeros((24, 32, 8), np.int16), scalar(), target)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_keeps_previous_file(tmp_path, monkeypatch):
    target = write_image(np.ones((24, 32, 8), np.int16), scalar(), tmp_path / "out.mha")
    before = target.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        write_image(np.zeros((24, 32, 8), np.int16), scalar(), target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.mha"]


def test_wrong_shape_is_refused(tmp_path):
    with pytest.raises(RuntimeError):
        write_image(np.zeros((5, 5, 5), np.int16), scalar(), tmp_path / "out.mha")
    assert not (tmp_path / "out.mha").exists()


def test_stem():
    assert stem(Path("a/case_1.nii.gz")) == "case_1"
    assert stem(Path("b/18_t2_SPACE.mha")) == "18_t2_SPACE"
