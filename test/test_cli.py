"""spider-segment end to end with a tiny untrained model: layouts, grids, bad input, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from algorithm.cli import GC_INPUT, GC_OUTPUT, main

PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # ITK x posterior, y inferior, z right (sagittal axis last)


def volume(path: Path, size=(12, 64, 48), spacing=(3.5, 0.8, 0.9), direction=None, dtype=np.int16) -> Path:
    """A small noisy volume written to ``path`` (ITK size order)."""
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray((rng.random(size[::-1]) * 500).astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -20.0, 30.0))
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing())
        and np.allclose(a.GetOrigin(), b.GetOrigin())
        and np.allclose(a.GetDirection(), b.GetDirection())
    )


def test_grand_challenge_layout(tmp_path, tiny_model_dir):
    src = volume(tmp_path / "in" / GC_INPUT / "case-1.mha", size=(48, 64, 12), spacing=(0.9, 0.8, 3.5), direction=PIR)
    (tmp_path / "in" / "inputs.json").write_text(json.dumps([{"interface": {"slug": "sagittal-spine-mri", "relative_path": str(GC_INPUT)}}]))
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]) == 0
    out = sitk.ReadImage(str(tmp_path / "out" / GC_OUTPUT / "case-1.mha"))
    assert same_grid(out, sitk.ReadImage(str(src)))
    assert out.GetPixelID() == sitk.sitkInt16
    assert list((tmp_path / "out" / GC_OUTPUT).iterdir()) == [tmp_path / "out" / GC_OUTPUT / "case-1.mha"]


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_file_and_folder_modes(tmp_path, tiny_model_dir, backend):
    a = volume(tmp_path / "in" / "a.mha")
    volume(tmp_path / "in" / "b.nii.gz", dtype=np.uint8)
    assert main(["-i", str(a), "-o", str(tmp_path / "one"), "--model", str(tiny_model_dir), "--backend", backend]) == 0
    assert (tmp_path / "one" / "a.mha").is_file()
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "all"), "--model", str(tiny_model_dir), "--backend", backend, "--qc"]) == 0
    assert sorted(p.name for p in (tmp_path / "all").glob("*.mha")) == ["a.mha", "b.mha"]
    assert (tmp_path / "all" / "qc" / "a_qc.png").is_file()
    record = json.loads((tmp_path / "all" / "qc" / "a_volumes.json").read_text())
    assert set(record["probability"]) == set(record["structures"]) and all(0.0 <= v <= 1.0 for v in record["probability"].values())
    assert record["model"] == tiny_model_dir.name and "structures" in record["review"]


def test_probability_map_leaves_the_classes_unchanged(tiny_model_dir):
    from algorithm.pipeline import Segmenter, predict_classes

    segmenter = Segmenter.load(tiny_model_dir, backend="onnxruntime", device="cpu")
    data = np.random.default_rng(1).standard_normal((5, 40, 36)).astype(np.float32)
    probability = np.full(data.shape, -1.0, np.float32)
    with_probability = predict_classes(data, (3.5, 0.9, 0.9), segmenter, probability=probability)
    assert np.array_equal(with_probability, predict_classes(data, (3.5, 0.9, 0.9), segmenter))
    assert probability.min() >= 1 / segmenter.config.num_classes - 1e-4 and probability.max() <= 1.0 + 1e-6  # the chosen class's share


def test_mirror_averages_both_directions(tiny_model_dir):
    from algorithm.pipeline import Segmenter

    segmenter = Segmenter.load(tiny_model_dir, mirror=True)
    batch = np.random.default_rng(0).standard_normal((2, segmenter.config.in_channels, 16, 16)).astype(np.float32)
    expected = (segmenter.backend(batch) + segmenter.backend(batch[:, ::-1].copy())) / 2
    assert np.allclose(segmenter.logits(batch), expected, atol=1e-6)


def test_good_files_written_despite_bad_ones(tmp_path, tiny_model_dir, caplog):
    volume(tmp_path / "in" / "good.mha")
    (tmp_path / "in" / "text.mha").write_text("not an image")
    (tmp_path / "in" / "empty.mha").write_bytes(b"")
    flat = sitk.GetImageFromArray(np.zeros((64, 64), np.int16))
    sitk.WriteImage(flat, str(tmp_path / "in" / "flat.mha"))
    nan = sitk.GetImageFromArray(np.full((10, 40, 40), np.nan, np.float32))
    sitk.WriteImage(nan, str(tmp_path / "in" / "nan.mha"))
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mha"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    for name in ("text.mha", "empty.mha", "flat.mha", "nan.mha"):
        assert any(name in e for e in errors), name
    assert all("\n" not in e for e in errors)


def test_model_that_cannot_load_is_one_line_exit_2(tmp_path, tiny_model_dir):
    """The model loads in the background while the first volume is read; when it cannot load, the
    run still ends with one line and exit 2, not one failure per volume, and writes nothing."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text((tiny_model_dir / "config.json").read_text())  # no weights, no graph
    for name in ("a", "b"):
        volume(tmp_path / "in" / f"{name}.mha")
    proc = subprocess.run([sys.executable, "-m", "algorithm", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "no inference backend could be loaded" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_loading_in_the_background_gives_the_same_segmentation(tiny_model_dir):
    from algorithm.pipeline import LoadingSegmenter, Segmenter, segment_volume

    data = np.random.default_rng(1).random((6, 40, 40)).astype(np.float32) * 400
    loading = LoadingSegmenter(tiny_model_dir, "onnxruntime", "cpu")
    assert loading.config == Segmenter.load(tiny_model_dir, "onnxruntime", "cpu").config
    expected = segment_volume(data, (3.5, 0.9, 0.9), Segmenter.load(tiny_model_dir, "onnxruntime", "cpu"))
    np.testing.assert_array_equal(segment_volume(data, (3.5, 0.9, 0.9), loading), expected)
    assert not loading.failed()


def test_constant_volume_gets_valid_output(tmp_path, tiny_model_dir):
    image = sitk.GetImageFromArray(np.full((8, 48, 48), 7, np.int16))
    sitk.WriteImage(image, str(tmp_path / "c.mha"))
    assert main(["-i", str(tmp_path / "c.mha"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]) == 0
    assert same_grid(sitk.ReadImage(str(tmp_path / "out" / "c.mha")), image)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p.mkdir() or p, "no input volumes"),
        (lambda p: (p / GC_INPUT).mkdir(parents=True) or (p / "inputs.json").write_text("{oops") and p, "inputs.json"),
    ],
)
def test_unusable_input_is_one_line_exit_2(tmp_path, tiny_model_dir, setup, message):
    src = setup(tmp_path / "in")
    proc = subprocess.run(
        [sys.executable, "-m", "algorithm", "-i", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_cpu_backends_never_import_torch_scipy_or_model_conversion(tmp_path, tiny_model_dir, backend):
    """torch and scipy would add their import time (torch about 1 s, scipy.ndimage 0.15 s) to every
    start, and so would OpenVINO's model-conversion API (0.1 s)."""
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    src = volume(tmp_path / "v.mha")
    code = (
        "import sys; sys.modules['torch'] = sys.modules['scipy'] = None\n"  # any import of them now fails
        "from algorithm.cli import main\n"
        f"code = main(['-i', {str(src)!r}, '-o', {str(tmp_path / 'out')!r}, '--model', {str(tiny_model_dir)!r}, '--backend', {backend!r}])\n"
        "assert not [m for m in sys.modules if m.startswith('openvino.tools')], 'model conversion imported'\n"
        "sys.exit(code)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{backend}-cpu" in proc.stderr


def test_qc_failure_after_the_mask_is_a_warning(tmp_path, tiny_model_dir, monkeypatch, caplog):
    from algorithm import qc

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(qc, "write_qc", broken)
    src = volume(tmp_path / "in" / "a.mha")
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), "--qc"]) == 0
    assert same_grid(sitk.ReadImage(str(tmp_path / "out" / "a.mha")), sitk.ReadImage(str(src)))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("QC output failed" in w and "disk full" in w and "the mask was written" in w for w in warnings)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("size, spacing, direction, plane", [
    ((48, 56, 12), (0.7, 0.7, 4.0), None, "axial"),  # LPS, thick slices along z (superior)
    ((48, 12, 56), (0.7, 4.0, 0.7), None, "coronal"),  # LPS, thick slices along y (posterior)
    ((48, 12, 56), (0.7, 4.0, 0.7), PIR, "axial"),  # PIR, thick slices along y (inferior)
    ((12, 48, 56), (4.0, 0.7, 0.7), PIR, "coronal"),  # PIR, thick slices along x (posterior)
])
def test_non_sagittal_series_is_refused_unless_allowed(tmp_path, tiny_model_dir, caplog, size, spacing, direction, plane):
    src = volume(tmp_path / "in" / "a.mha", size=size, spacing=spacing, direction=direction)
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]) == 1
    assert not (tmp_path / "out" / "a.mha").exists()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "a.mha" in r.getMessage()]
    assert len(errors) == 1 and f"{plane} series" in errors[0] and "--allow-non-sagittal" in errors[0] and "\n" not in errors[0]
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), "--allow-non-sagittal"]) == 0
    assert same_grid(sitk.ReadImage(str(tmp_path / "out" / "a.mha")), sitk.ReadImage(str(src)))
