"""Packaging: ONNX Runtime's CPU and GPU builds in exclusive extras, the torch build chosen by a
Makefile variable, and project metadata that setuptools reads without a deprecation warning."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
ORT = {"onnxruntime", "onnxruntime-gpu"}


def names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group().lower() for r in requirements}


def test_onnxruntime_builds_are_in_exclusive_extras():
    base = names(PROJECT["dependencies"])
    extras = {k: names(v) for k, v in PROJECT["optional-dependencies"].items()}
    assert not base & ORT, "the runtime dependencies must not force one ONNX Runtime build"
    assert all(not ORT <= reqs for reqs in extras.values())
    assert extras["cpu"] == {"onnxruntime", "openvino"} and extras["gpu"] == {"onnxruntime-gpu"}
    assert "onnxruntime" not in base | extras["gpu"] | extras["train"] | extras["test"]  # the GPU machine's extras
    optional = PROJECT["optional-dependencies"]
    assert sorted(optional["dev"]) == sorted(optional["cpu"] + optional["train"] + optional["test"] + optional["dicom"] + optional["cohort"])


def test_setuptools_reads_metadata_without_deprecation_warning():
    pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    assert isinstance(PROJECT["license"], str)  # an SPDX expression, not the deprecated table
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert not caught, [str(w.message)[:200] for w in caught]


def _make_install(*variables: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-n", "-B", "install", *variables], cwd=REPO, capture_output=True, text=True, check=True)
    return result.stdout


def test_makefile_chooses_torch_build_and_extras():
    pin = next(r for r in PROJECT["optional-dependencies"]["torch"] if r.startswith("torch=="))
    version = pin.removeprefix("torch==")
    default = _make_install()
    assert f'"torch=={version}+cpu"' in default and '"https://download.pytorch.org/whl/cpu"' in default
    assert '-e ".[dev]"' in default
    gpu = _make_install("TORCH=cu130", "EXTRAS=gpu,train,test")
    assert f'"torch=={version}+cu130"' in gpu and '"https://download.pytorch.org/whl/cu130"' in gpu
    assert '-e ".[gpu,train,test]"' in gpu and "+cpu" not in gpu


def test_each_container_flavour_installs_one_onnxruntime_build():
    """GPU flavour (the Dockerfile's default): onnxruntime-gpu; CPU flavour (build.sh --cpu): onnxruntime."""
    gpu = re.search(r'^ARG RUNTIME_PACKAGES="(.*)"$', (REPO / "Dockerfile").read_text(), re.M).group(1)
    cpu = re.search(r'^\s+runtime="(.*)"$', (REPO / "build.sh").read_text(), re.M).group(1)
    common = (REPO / "requirements-image.txt").read_text()
    assert re.search(r"onnxruntime-gpu==\d", gpu) and not re.search(r"onnxruntime==", gpu)
    assert re.search(r"onnxruntime==\d", cpu) and "gpu" not in cpu and "onnxruntime" not in common
    assert not names(PROJECT["optional-dependencies"]["cohort"]) & set(re.findall(r"([A-Za-z0-9_.-]+)==", gpu + cpu + common))  # no Dask in the image
