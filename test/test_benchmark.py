"""spider-benchmark on a tiny model and a tiny volume: configurations, statistics, skipped
backends, the whole-process timing, table/JSON/plot output, and the nnU-Net comparison where
nnunetv2 is installed."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from spider_tools import nnunet_baseline
from spider_tools.benchmark import (
    BenchmarkError,
    Configuration,
    NnunetOptions,
    benchmark_nnunet,
    configurations,
    format_table,
    isolated,
    main,
    nnunet_plan,
    plan_grids,
    plot,
    precision_problem,
    run_benchmark,
    stage_stats,
    summarize,
    time_process,
    volume_info,
)
from algorithm.pipeline import STAGES

PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # ITK x posterior, y inferior, z right


def write_volume(folder, name, direction=PIR):
    """A tiny labelled volume, sagittal axis last (PIR): 48 x 40 x 6 voxels, and its class mask."""
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(0)
    image = rng.normal(300, 60, (6, 40, 48)).astype(np.int16)
    mask = np.zeros(image.shape, np.uint8)
    mask[1:5, 10:30, 10:20], mask[1:5, 10:30, 22:26], mask[1:5, 5:35, 30:34] = 1, 2, 3
    paths = []
    for array, suffix in ((image, ""), (mask, "_mask")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing((0.8, 0.8, 3.0))
        itk.SetDirection(direction)
        paths.append(folder / f"{name}{suffix}.mha")
        sitk.WriteImage(itk, str(paths[-1]))
    return tuple(paths)


@pytest.fixture(scope="module")
def tiny_volume(tmp_path_factory):
    return write_volume(tmp_path_factory.mktemp("volumes"), "tiny")


@pytest.fixture(scope="module")
def report(tiny_model_dir, tiny_volume):
    """One benchmark run: PyTorch and ONNX Runtime on the CPU, plus configurations that cannot run."""
    return run_benchmark([tiny_volume], tiny_model_dir, ["torch", "onnxruntime", "tensorrt"], ["cpu"], ["fp32", "fp16"], repeats=2, warmup=0)


def test_configurations_vary_precision_for_torch_only():
    labels = [c.label for c in configurations(["torch", "onnxruntime", "tensorrt"], ["cpu", "cuda"], ["fp32", "fp16"])]
    assert labels == ["torch-cpu-fp32", "torch-cpu-fp16", "torch-cuda-fp32", "torch-cuda-fp16",
                      "onnxruntime-cpu-fp32", "onnxruntime-cuda-fp16", "tensorrt-cpu-engine", "tensorrt-cuda-engine"]
    assert precision_problem(Configuration("torch", "cpu", "fp16")) == "FP16 autocast runs on CUDA only"
    assert precision_problem(Configuration("torch", "cuda", "fp16")) is None


def test_openvino_configurations_are_cpu_fp32_and_bf16():
    labels = [c.label for c in configurations(["openvino", "torch"], ["cpu", "cuda"], ["fp32", "fp16", "bf16"])]
    assert labels == ["openvino-cpu-fp32", "openvino-cpu-bf16", "torch-cpu-fp32", "torch-cpu-fp16", "torch-cuda-fp32", "torch-cuda-fp16"]


def test_openvino_precisions_measured_or_skipped_with_reason(tiny_model_dir, tiny_volume):
    pytest.importorskip("openvino", reason="openvino is not installed")
    report = run_benchmark([tiny_volume], tiny_model_dir, ["openvino"], ["cpu"], ["fp32", "bf16"], repeats=1, warmup=0, process=False)
    measured = {r["config"] for r in report["results"]}
    skipped = {s["config"]: s["reason"] for s in report["skipped"]}
    assert "openvino-cpu-fp32" in measured
    assert "openvino-cpu-bf16" in measured or "no native bf16" in skipped["openvino-cpu-bf16"]


def test_statistics_over_repeats():
    assert summarize([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    runs = [dict.fromkeys(STAGES, 1.0), dict.fromkeys(STAGES, 2.0), dict.fromkeys(STAGES, 4.0)]
    stats = stage_stats(runs)
    assert stats["predict"] == {"median": 2.0, "min": 1.0, "max": 4.0}
    assert stats["total"] == {"median": 2.0 * len(STAGES), "min": 1.0 * len(STAGES), "max": 4.0 * len(STAGES)}


def test_volume_info_gives_canonical_shape(tiny_volume):
    volume = volume_info(tiny_volume[0])
    assert volume.name == "tiny"
    assert volume.shape == (6, 40, 48)  # sagittal slices first, whatever the axis order on disk
    assert volume.spacing == (3.0, 0.8, 0.8)


def test_report_measures_available_backends(report):
    results = {r["config"]: r for r in report["results"]}
    assert set(results) == {"torch-cpu-fp32", "onnxruntime-cpu-fp32"}
    for r in results.values():
        assert set(r["stages"]) == {*STAGES, "total"}
        total = r["stages"]["total"]
        assert 0 < total["min"] <= total["median"] <= total["max"]
        assert r["volumes_per_s"] == pytest.approx(1 / total["median"])
        assert r["slices_per_s"] == pytest.approx(6 / total["median"])
        assert r["peak_rss_mb"] > 50 and r["load_s"] > 0
    json.dumps(report)  # the --json output


def test_unavailable_configurations_are_skipped_with_reason(report):
    reasons = {s["config"]: s["reason"] for s in report["skipped"]}
    assert reasons["torch-cpu-fp16"] == "FP16 autocast runs on CUDA only"
    assert "TensorRT needs a GPU" in reasons["tensorrt-cpu-engine"]
    table = format_table(report)
    assert "skipped tensorrt-cpu-engine: " in table
    assert "torch-cpu-fp32" in table and "onnxruntime-cpu-fp32" in table


def test_whole_process_is_timed(report):
    (process,) = report["process"]
    assert process["volume"] == "tiny" and process["device"] == "cpu"
    assert process["backend"].startswith(("openvino-cpu", "onnxruntime-cpu")) and process["backend"] in format_table(report)
    assert process["wall_s"]["min"] > 0 and process["peak_rss_mb"] > 50
    assert " -i " in process["command"] and "whole spider-segment process" in format_table(report)


def _allocate(mb: int) -> dict:
    """A child's job for ``isolated``: hold ``mb`` MiB of touched memory."""
    block = b"\x01" * (mb * 2**20)
    return {"held": len(block)}


@pytest.fixture
def parent_holding_500_mb():
    """The measuring process itself holds 500 MiB, which must not show in its children's figures."""
    block = np.ones(500 * 2**20, np.uint8)
    yield block
    del block


def test_time_process_measures_the_childs_own_peak_memory(parent_holding_500_mb):
    idle = time_process([sys.executable, "-c", "pass"])["peak_rss_mb"]
    busy = time_process([sys.executable, "-c", "x = b'\\x01' * (200 * 2**20)"])["peak_rss_mb"]
    assert idle < 100, f"a child that allocates nothing reported {idle:.0f} MB"
    assert 190 < busy - idle < 260 and busy < 350


def test_isolated_measures_the_childs_own_peak_memory(parent_holding_500_mb):
    idle = isolated(_allocate, mb=0)["peak_rss_mb"]
    busy = isolated(_allocate, mb=200)["peak_rss_mb"]
    assert idle < 250, f"a child that allocates nothing reported {idle:.0f} MB"
    assert 190 < busy - idle < 260


def test_time_process_reports_failure():
    with pytest.raises(Exception, match="exit 3"):
        time_process([sys.executable, "-c", "raise SystemExit(3)"])


def test_plot_is_written(report, tmp_path):
    path = plot(report, tmp_path / "plots" / "stages.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_json_and_plot(tiny_model_dir, tiny_volume, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tiny.mha").write_bytes(tiny_volume[0].read_bytes())
    code = main(["--input", str(tmp_path / "in"), "--model", str(tiny_model_dir), "--backend", "onnxruntime", "--device", "cpu",
                 "--repeats", "1", "--warmup", "0", "--no-process", "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert code == 0
    data = json.loads((tmp_path / "b.json").read_text())
    assert [(r["config"], r["volume"]) for r in data["results"]] == [("onnxruntime-cpu-fp32", "tiny")]
    assert (tmp_path / "b.png").is_file()
    assert "onnxruntime-cpu-fp32" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--model", "/nonexistent"], "no model in /nonexistent"),
    (["--backend", "cuda"], "--backend: expected"),
    (["--input", "/nonexistent"], "not a folder"),
])
def test_cli_bad_arguments_fail_in_one_line(tiny_model_dir, args, message, capsys):
    assert main(["--model", str(tiny_model_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_nnunet_skipped_with_reason_when_not_installed(monkeypatch, tiny_volume):
    monkeypatch.setattr(nnunet_baseline, "unavailable_reason", lambda: "nnunetv2 is not installed")
    report = {"process": []}
    benchmark_nnunet(tiny_volume[0].parent, [tiny_volume], [volume_info(tiny_volume[0])], NnunetOptions(), report)
    assert report["nnunet"] == {"skipped": "nnunetv2 is not installed"}
    assert "nnU-Net skipped: nnunetv2 is not installed" in format_table({**report, **_empty_report()})


def _empty_report() -> dict:
    return {"machine": {"cpus": 2, "load_average": 0.0, "gpu": None}, "model": {"dir": "m", "widths": [4]}, "repeats": 1, "warmup": 0, "results": [], "skipped": []}


def test_nnunet_plans_and_predicts_tiny_volume(tiny_volume, tmp_path):
    reason = nnunet_baseline.unavailable_reason()
    if reason is not None:
        pytest.skip(f"nnU-Net comparison not tested: {reason}")
    volume = volume_info(tiny_volume[0])
    report = {"process": [{"volume": "tiny", "device": "cpu", "wall_s": {"median": 0.5}}]}
    options = NnunetOptions(mirroring=[False], root=tmp_path / "nnunet", masks_dir=None)
    benchmark_nnunet(options.root, [tiny_volume], [volume], options, report)
    plan = report["nnunet"]["plan"]
    assert plan["source"] == "the synthetic benchmark volumes" and len(plan["patch_size"]) == 3
    (run,) = report["nnunet"]["runs"]
    assert run["volume"] == "tiny" and not run["mirroring"] and run["predict_s"] > 0
    assert run["ratio_to_spider_segment"] == pytest.approx(run["predict_s"] / 0.5)
    assert (options.root / "predictions" / "tiny.mha").is_file()
    assert (options.root / "plan_summary.json").is_file()  # reused by the next run


def test_plan_grids_filter_by_sequence(tmp_path):
    write_volume(tmp_path, "1_t1")
    write_volume(tmp_path, "2_t2_SPACE")
    assert [g.name for g in plan_grids(tmp_path, ["t1", "t2"])] == ["1_t1"]
    assert [g.name for g in plan_grids(tmp_path, ["t1", "t2", "t2_SPACE"])] == ["1_t1", "2_t2_SPACE"]  # not the *_mask files
    assert plan_grids(None, ["t1"]) == []


def test_nnunet_dir_with_another_plan_is_refused(tmp_path):
    model = nnunet_baseline.model_folder(tmp_path)
    model.mkdir(parents=True)
    (model / "plans.json").write_text("{}")
    (tmp_path / "plan_summary.json").write_text(json.dumps({"source": "elsewhere"}))
    with pytest.raises(BenchmarkError, match="holds an nnU-Net plan made from elsewhere"):
        nnunet_plan(tmp_path, [], NnunetOptions(masks_dir=None))
