"""The OpenVINO backend: FP32 logits as ONNX Runtime's, the precision it reports, bf16 class maps
of the bundled model against FP32 on the real sample case, and an import without the model
conversion API. Skipped where openvino is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from algorithm.backends import BackendUnavailable, OnnxBackend, OpenVinoBackend
from algorithm.config import Config

pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino, or the extra cpu)")

SAMPLE = Path(__file__).parent / "cases" / "spider-50-t2space" / "input" / "images" / "sagittal-spine-mri" / "50_t2_SPACE.mha"


def _bf16_here() -> bool:
    from algorithm.backends import import_openvino

    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_fp32_logits_match_onnxruntime(tiny_model_dir):
    config = Config.load(tiny_model_dir)
    batch = np.random.default_rng(0).normal(size=(3, config.in_channels, 64, 96)).astype(np.float32)
    ov = OpenVinoBackend(tiny_model_dir, config, "cpu", precision="fp32")
    assert ov.name == "openvino-cpu-fp32" and ov.device == "cpu"
    np.testing.assert_allclose(ov(batch), OnnxBackend(tiny_model_dir, config, "cpu")(batch), atol=1e-4)


def test_outputs_are_not_overwritten_by_the_next_call(tiny_model_dir):
    """Test-time mirroring averages two calls' logits: the first must survive the second."""
    config = Config.load(tiny_model_dir)
    ov = OpenVinoBackend(tiny_model_dir, config, "cpu", precision="fp32")
    a, b = (np.full((1, config.in_channels, 32, 32), v, np.float32) for v in (0.0, 5.0))
    first = ov(a)
    kept = first.copy()
    ov(b)
    np.testing.assert_array_equal(first, kept)


def test_precision_is_what_the_cpu_runs(tiny_model_dir):
    ov = OpenVinoBackend(tiny_model_dir, Config.load(tiny_model_dir), "cpu")
    assert ov.precision == ("bf16" if _bf16_here() else "fp32") and ov.name.endswith(ov.precision)
    ov.compile("fp32")
    assert ov.name == "openvino-cpu-fp32"
    with pytest.raises(ValueError, match="precision"):
        ov.compile("int8")


def test_cuda_is_unavailable(tiny_model_dir):
    with pytest.raises(BackendUnavailable, match="CPU only"):
        OpenVinoBackend(tiny_model_dir, Config.load(tiny_model_dir), "cuda")


def test_missing_graph_is_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable, match="no model.onnx"):
        OpenVinoBackend(tmp_path, Config(), "cpu")


def test_import_skips_model_conversion_and_leaves_it_importable():
    code = (
        "import sys\n"
        "from algorithm.backends import import_openvino\n"
        "ov = import_openvino()\n"
        "assert ov.Core and 'openvino.tools.ovc' not in sys.modules, sorted(m for m in sys.modules if 'ovc' in m)\n"
        "import openvino.tools.ovc\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bf16_class_map_of_the_bundled_model_agrees_with_fp32():
    """The real sample case (15 slices of T2-SPACE) through the bundled model: every class map of
    bf16 against FP32 at Dice >= 0.99 per class, and the same structures after post-processing."""
    if not _bf16_here():
        pytest.skip("this CPU has no native bf16: OpenVINO runs FP32 here")
    from algorithm.io import read_image
    from algorithm.geometry import orientation
    from algorithm.pipeline import DEFAULT_MODEL_DIR, Models, segment_volume

    import SimpleITK as sitk

    image = read_image(SAMPLE)
    orient = orientation(image.GetDirection(), image.GetSpacing())
    volume = orient.to_canonical(sitk.GetArrayViewFromImage(image))
    fp32 = Models(DEFAULT_MODEL_DIR, "onnxruntime", "cpu").for_spacing(orient.spacing[0]).result()
    bf16 = Models(DEFAULT_MODEL_DIR, "openvino", "cpu").for_spacing(orient.spacing[0]).result()
    assert bf16.backend.name == "openvino-cpu-bf16"
    a, b = (segment_volume(volume, orient.spacing, s) for s in (fp32, bf16))
    assert set(np.unique(a)) == set(np.unique(b))
    for lo, hi in ((1, 99), (100, 100), (200, 299)):
        x, y = (a >= lo) & (a <= hi), (b >= lo) & (b <= hi)
        assert 2 * (x & y).sum() / (x.sum() + y.sum()) >= 0.99, (lo, hi)
