"""Speed and memory benchmark: per-stage timings for each inference backend, the whole
``spider-segment`` process end to end, and optionally nnU-Net v2 3d_fullres on the same volumes.

Every measured configuration (backend x device x precision x volume) runs in a fresh process, so
that peak memory figures are its own and nothing is cached from a previous configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

from algorithm.config import Config
from algorithm.pipeline import DEFAULT_MODEL_DIR, STAGES

BACKEND_CHOICES = ("torch", "onnxruntime", "openvino", "tensorrt")
DEVICE_CHOICES = ("cpu", "cuda")
PRECISION_CHOICES = ("fp32", "fp16", "bf16")
TORCH_PRECISIONS, OPENVINO_PRECISIONS = ("fp32", "fp16"), ("fp32", "bf16")
DEFAULT_VOLUMES = ("t2", "t1", "t2_SPACE")
SPIDER_MASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "spider-masks"


class BenchmarkError(Exception):
    """Bad arguments or input, reported as one line."""


@dataclass(frozen=True)
class Configuration:
    """One way of running the model: backend, device and numeric precision."""

    backend: str
    device: str
    precision: str  # "fp32"/"fp16" for PyTorch, "fp32"/"bf16" for OpenVINO; ONNX Runtime: FP32 graph on CPU, FP16 graph on CUDA; TensorRT: its engine

    @property
    def label(self) -> str:
        return f"{self.backend}-{self.device}-{self.precision}"


@dataclass(frozen=True)
class Volume:
    """A benchmark input: its file and canonical shape (sagittal slices first)."""

    name: str
    path: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]


def configurations(backends: list[str], devices: list[str], precisions: list[str]) -> list[Configuration]:
    """All configurations to try; precision only varies for PyTorch and OpenVINO (CPU only)."""
    out = []
    for backend in backends:
        for device in devices:
            if backend == "torch":
                out += [Configuration(backend, device, p) for p in precisions if p in TORCH_PRECISIONS]
            elif backend == "openvino":
                out += [Configuration(backend, device, p) for p in precisions if p in OPENVINO_PRECISIONS and device == "cpu"]
            elif backend == "onnxruntime":
                out.append(Configuration(backend, device, "fp16" if device == "cuda" else "fp32"))
            else:
                out.append(Configuration(backend, device, "engine"))
    return out


def precision_problem(config: Configuration) -> str | None:
    """Why a configuration cannot run whatever the machine (None if it can)."""
    if config.precision == "fp16" and config.device == "cpu":
        return "FP16 autocast runs on CUDA only"
    return None


def summarize(values: list[float]) -> dict[str, float]:
    """Median, minimum and maximum of repeated measurements."""
    return {"median": median(values), "min": min(values), "max": max(values)}


def volume_info(path: Path) -> Volume:
    """Canonical shape and spacing of a volume file, from its header only."""
    from algorithm.geometry import header_orientation
    from algorithm.io import stem

    try:
        orient, size = header_orientation(path)
    except RuntimeError:
        raise BenchmarkError(f"{path}: cannot read image header") from None
    array_shape = tuple(reversed(size))
    return Volume(stem(path), str(path), tuple(int(array_shape[a]) for a in orient.axes), orient.spacing)


def synthetic_volumes(folder: Path, names: list[str]) -> list[tuple[Path, Path]]:
    """Write synthetic volumes with real SPIDER geometries (spider_tools.synthetic.GEOMETRIES) and their
    class-label masks into ``folder``; return (image, mask) paths."""
    from tqdm import tqdm

    from spider_tools.synthetic import GEOMETRIES, synthesize

    unknown = sorted(set(names) - set(GEOMETRIES))
    if unknown:
        raise BenchmarkError(f"unknown synthetic volume(s) {', '.join(unknown)}; known: {', '.join(GEOMETRIES)}")
    return [write_case(folder, name, *synthesize(GEOMETRIES[name]["size"], GEOMETRIES[name]["spacing"], contrast=name))
            for name in tqdm(names, desc="synthesize", unit="volume", leave=False)]


def write_case(folder: Path, name: str, image, mask) -> tuple[Path, Path]:
    """Write a SimpleITK image as NAME.mha and its SPIDER mask as a class mask (0 background,
    1 vertebra, 2 disc, 3 canal) NAME_mask.mha; return both paths."""
    import SimpleITK as sitk

    from algorithm.labels import to_classes

    classes = sitk.GetImageFromArray(to_classes(sitk.GetArrayFromImage(mask)).astype("uint8"))
    classes.CopyInformation(mask)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{name}.mha", folder / f"{name}_mask.mha"
    sitk.WriteImage(image, str(paths[0]), useCompression=True)
    sitk.WriteImage(classes, str(paths[1]), useCompression=True)
    return paths


def random_model(folder: Path, config: Config | None = None) -> Path:
    """An untrained model (config.json, model.pt, model.onnx) of ``config``'s architecture, by
    default the standard one: inference speed does not depend on the weights."""
    import warnings

    import torch

    from algorithm.backends import WEIGHTS_NAME
    from spider_tools.export import export_onnx
    from algorithm.model import build_model

    config = config or Config()
    folder.mkdir(parents=True, exist_ok=True)
    config.save(folder)
    torch.manual_seed(0)
    torch.save(build_model(config).state_dict(), folder / WEIGHTS_NAME)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(folder)
    return folder


# --- measurements, each in a fresh process -------------------------------------------------


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident memory (``VmHWM`` of ``/proc/<pid>/status``, MiB) of a live process: its own
    high-water mark since its last exec, never its parent's. None once the process has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None  # a zombie keeps no memory figures


def _peak_memory() -> dict[str, float | None]:
    """Peak resident memory of this process and, where torch used CUDA, peak GPU memory (MiB)."""
    gpu = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = torch.cuda.max_memory_allocated() / 2**20
    return {"peak_rss_mb": peak_rss_mb(), "gpu_peak_mb": gpu}


def _child(function, kwargs: dict) -> dict:
    return {**function(**kwargs), **_peak_memory()}


def isolated(function, **kwargs) -> dict:
    """Run ``function(**kwargs)`` (a module-level function returning a dict) in a fresh Python
    process; add that process's peak memory to its result."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_child, function, kwargs).result()
    except BrokenProcessPool:
        raise BenchmarkError(f"the process running {function.__name__} died (killed, or out of memory)") from None


def _set_precision(backend, precision: str) -> str | None:
    """FP32 or FP16 autocast for the PyTorch backend, FP32 or bf16 for OpenVINO (ONNX Runtime and
    TensorRT run as exported); the reason where the machine cannot run ``precision``."""
    from algorithm.backends import OpenVinoBackend, TorchBackend

    if isinstance(backend, TorchBackend):
        backend.fp16 = precision == "fp16"
    elif isinstance(backend, OpenVinoBackend):
        backend.compile(precision)
        if backend.precision != precision:
            return f"this CPU has no native {precision} (OpenVINO runs {backend.precision})"
    return None


def measure(model_dir: str, config: Configuration, volume: str, repeats: int, warmup: int) -> dict:
    """Load the model once, segment ``volume`` ``warmup`` times untimed and ``repeats`` times timed;
    return per-run stage seconds, or the reason the configuration is unavailable."""
    from algorithm.backends import BackendUnavailable
    from algorithm.pipeline import Segmenter, segment_file

    start = time.perf_counter()
    try:
        segmenter = Segmenter.load(model_dir, config.backend, config.device)
    except BackendUnavailable as err:
        return {"skipped": str(err)}
    if segmenter.backend.device != config.device:
        return {"skipped": f"{config.backend} would run on the {segmenter.backend.device} ({segmenter.backend.name})"}
    reason = _set_precision(segmenter.backend, config.precision)
    if reason:
        return {"skipped": reason}
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "labels.mha"
        for _ in range(warmup):
            segment_file(volume, out, segmenter)
        runs = [segment_file(volume, out, segmenter).seconds for _ in range(repeats)]
    torch = sys.modules.get("torch")
    return {"load_s": load_s, "runs": runs, "torch_threads": torch.get_num_threads() if torch else None}


def segment_command(volume: str, out_dir: str, model_dir: str, device: str) -> list[str]:
    """The ``spider-segment`` command line for one volume (run as ``python -m algorithm.cli``, which
    is what the console script does, so that it also works where the package is not installed)."""
    return [sys.executable, "-m", "algorithm.cli", "-i", volume, "-o", out_dir, "--model", model_dir, "--device", device]


def time_process(command: list[str], interval_s: float = 0.005) -> dict:
    """Wall time, peak resident memory and the backend and model it logged (None if it logged none) of one
    process run to completion. The peak is the
    child's own ``VmHWM``, sampled while it runs (it only grows, so the last sample before the
    exit holds it); ``ru_maxrss`` of ``wait4`` is not used: Linux carries the parent's high-water
    mark over into it at fork."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        peak = 0.0
        while True:
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            if proc.poll() is not None:
                break
            time.sleep(interval_s)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BenchmarkError(f"'{' '.join(command)[:160]}' failed (exit {proc.returncode}): {tail[0][:200]}")
        log.seek(0)
        text = log.read().decode(errors="replace")
        backend, model = re.search(r"backend: (\S+)", text), re.search(r"\(model (\S+);", text)
    return {"wall_s": wall, "peak_rss_mb": peak, "backend": backend and backend.group(1), "model": model and model.group(1)}


# --- the benchmark ------------------------------------------------------------------------


def stage_stats(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per-stage and total statistics over repeated runs."""
    stats = {stage: summarize([run.get(stage, 0.0) for run in runs]) for stage in STAGES}
    stats["total"] = summarize([sum(run.values()) for run in runs])
    return stats


def benchmark_backends(model_dir: Path, configs: list[Configuration], volumes: list[Volume], repeats: int, warmup: int, report: dict) -> None:
    """Measure each available configuration on each volume with the model the volume's slice
    spacing routes to (``algorithm.routing``); record skipped ones with the reason."""
    from tqdm import tqdm

    from algorithm.routing import choose, model_folders

    models = model_folders(model_dir)
    for config in tqdm(configs, desc="backends", unit="config", leave=False):
        reason = precision_problem(config)
        for volume in volumes if reason is None else []:
            folder = choose(models, volume.spacing[0])
            result = isolated(measure, model_dir=str(folder), config=config, volume=volume.path, repeats=repeats, warmup=warmup)
            if "skipped" in result:
                reason = result["skipped"]
                break
            stats = stage_stats(result["runs"])
            total = stats["total"]["median"]
            report["results"].append({
                "config": config.label, **asdict(config), "volume": volume.name, "model": folder.name,
                "load_s": result["load_s"], "stages": stats, "volumes_per_s": 1 / total, "slices_per_s": volume.shape[0] / total,
                "peak_rss_mb": result["peak_rss_mb"], "gpu_peak_mb": result["gpu_peak_mb"], "torch_threads": result["torch_threads"],
            })
        if reason is not None:
            report["skipped"].append({"config": config.label, "reason": reason})


def benchmark_process(model_dir: Path, devices: list[str], volumes: list[Volume], repeats: int, warmup: int, report: dict) -> None:
    """Time the whole ``spider-segment`` process (start, imports, model load, segmentation, write)."""
    from tqdm import tqdm

    for device in devices:
        if device == "cuda" and not _cuda_available():
            report["skipped"].append({"config": "spider-segment-cuda", "reason": "no CUDA device"})
            continue
        for volume in tqdm(volumes, desc=f"spider-segment ({device})", unit="volume", leave=False):
            with tempfile.TemporaryDirectory() as tmp:
                command = segment_command(volume.path, tmp, str(model_dir), device)
                for _ in range(warmup):
                    time_process(command)
                runs = [time_process(command) for _ in range(repeats)]
            wall = summarize([r["wall_s"] for r in runs])
            report["process"].append({
                "volume": volume.name, "device": device, "backend": runs[-1]["backend"], "model": runs[-1]["model"], "wall_s": wall, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "volumes_per_s": 1 / wall["median"], "slices_per_s": volume.shape[0] / wall["median"], "command": " ".join(command),
            })


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return torch.cuda.is_available()


@dataclass
class NnunetOptions:
    """What the nnU-Net comparison runs on."""

    volumes: list[str] = field(default_factory=list)  # volume names; empty: all
    mirroring: list[bool] = field(default_factory=lambda: [False, True])
    root: Path | None = None  # nnU-Net raw/preprocessed/results tree, kept and reused; None: temporary
    masks_dir: Path | None = SPIDER_MASKS  # real SPIDER headers to plan from, when present
    plan_sequences: list[str] = field(default_factory=lambda: list(DEFAULT_VOLUMES))  # which of them


def plan_grids(masks_dir: Path | None, sequences: list[str]) -> list[Volume]:
    """The real SPIDER grids in ``masks_dir`` (files named <id>_<sequence>.mha) of the given sequences."""
    if masks_dir is None or not masks_dir.is_dir():
        return []
    from algorithm.io import is_volume_file

    grids = [volume_info(p) for p in sorted(masks_dir.iterdir()) if is_volume_file(p)]
    return [g for g in grids if g.name.partition("_")[2] in sequences]


def synthesize_on_grids(folder: Path, grids: list[Volume]) -> list[tuple[Path, Path]]:
    """Synthetic labelled volumes on ``grids``, each laid out sagittal axis first (its size and
    spacing per anatomical axis kept), as the benchmark volumes are. nnU-Net does not reorient:
    the few sagittal-last SPIDER files would otherwise pull its target spacing to ~0.64 mm isotropic."""
    from tqdm import tqdm

    from spider_tools.synthetic import synthesize

    cases = []
    for seed, grid in enumerate(tqdm(grids, desc="nnU-Net plan cases", leave=False)):
        (sag, si, ap), (s_sag, s_si, s_ap) = grid.shape, grid.spacing
        image, mask = synthesize((sag, ap, si), (s_sag, s_ap, s_si), contrast="t1" if "_t1" in grid.name else "t2", seed=seed)
        cases.append(write_case(folder, grid.name, image, mask))
    return cases


def nnunet_plan(root: Path, volumes_with_masks: list[tuple[Path, Path]], options: NnunetOptions) -> dict:
    """Plan and build the nnU-Net model under ``root`` from synthetic volumes on the real SPIDER grids
    (where present, else from the labelled benchmark volumes), or reuse the one already there."""
    from spider_tools import nnunet_baseline

    grids = plan_grids(options.masks_dir, options.plan_sequences)
    if grids:
        source = f"synthetic volumes on {len(grids)} real SPIDER grids ({', '.join(options.plan_sequences)}) in {options.masks_dir}, sagittal axis first"
    else:
        source = "the synthetic benchmark volumes"
    summary = root / "plan_summary.json"
    if summary.is_file() and (nnunet_baseline.model_folder(root) / "plans.json").is_file():
        plan = json.loads(summary.read_text())
        if plan["source"] != source:
            raise BenchmarkError(f"{root} holds an nnU-Net plan made from {plan['source']}: choose another --nnunet-dir")
        return plan
    cases = synthesize_on_grids(root / "plan_cases", grids) if grids else volumes_with_masks
    if not cases:
        raise BenchmarkError("nnU-Net needs labelled volumes to plan from: use the synthetic volumes or ../shared/data/spider-masks")
    print(f"planning nnU-Net 3d_fullres from {source} ...", file=sys.stderr)
    plan = isolated(nnunet_baseline.prepare, root=str(root), cases=[(str(i), str(m)) for i, m in cases])
    plan = {k: v for k, v in plan.items() if not k.endswith("_mb")} | {"source": source}
    summary.write_text(json.dumps(plan, indent=1) + "\n")
    return plan


def benchmark_nnunet(root: Path, volumes_with_masks: list[tuple[Path, Path]], volumes: list[Volume], options: NnunetOptions, report: dict) -> None:
    """Time nnU-Net's predictor (CPU, one fold) on ``volumes`` and its ratio to our whole-process time."""
    from spider_tools import nnunet_baseline

    reason = nnunet_baseline.unavailable_reason()
    if reason is not None:
        report["nnunet"] = {"skipped": reason}
        return
    plan = nnunet_plan(root, volumes_with_masks, options)
    ours = {p["volume"]: p["wall_s"]["median"] for p in report["process"] if p["device"] == "cpu"}
    runs = []
    for volume in volumes:
        for mirror in options.mirroring:
            print(f"nnU-Net 3d_fullres on {volume.name}, mirroring {'on' if mirror else 'off'} ...", file=sys.stderr)
            result = isolated(nnunet_baseline.predict, root=str(root), image=volume.path, out_dir=str(root / "predictions"), mirroring=mirror)
            ratio = result["predict_s"] / ours[volume.name] if volume.name in ours else None
            runs.append({"volume": volume.name, "mirroring": mirror, **result, "ratio_to_spider_segment": ratio})
    report["nnunet"] = {"plan": plan, "runs": runs}


def run_benchmark(
    volumes_with_masks: list[tuple[Path, Path | None]],
    model_dir: Path,
    backends: list[str],
    devices: list[str],
    precisions: list[str],
    repeats: int = 3,
    warmup: int = 1,
    process: bool = True,
    nnunet: NnunetOptions | None = None,
) -> dict:
    """Run the whole benchmark; return the report (see ``--json``)."""
    if repeats < 1 or warmup < 0:
        raise BenchmarkError("--repeats must be >= 1 and --warmup >= 0")
    volumes = [volume_info(image) for image, _ in volumes_with_masks]
    chosen = [v for v in volumes if nnunet and (not nnunet.volumes or v.name in nnunet.volumes)]
    if nnunet and not chosen:
        raise BenchmarkError(f"--nnunet-volumes {','.join(nnunet.volumes)} matches none of {', '.join(v.name for v in volumes)}")
    from algorithm.routing import model_folders

    configs = {folder.name: config for folder, config in model_folders(model_dir).items()}
    model = {"dir": str(model_dir), "widths": {name: list(c.widths) for name, c in configs.items()}, "spacing_mm": {name: c.spacing for name, c in configs.items()},
             "sagittal_spacing_mm": {name: list(c.sagittal_spacing_mm) for name, c in configs.items()}}
    report = {"machine": machine_info(), "model": model, "repeats": repeats, "warmup": warmup,
              "volumes": [asdict(v) for v in volumes], "results": [], "skipped": [], "process": []}
    benchmark_backends(model_dir, configurations(backends, devices, precisions), volumes, repeats, warmup, report)
    if process:
        benchmark_process(model_dir, devices, volumes, repeats, warmup, report)
    if nnunet:
        labelled = [(i, m) for i, m in volumes_with_masks if m is not None]
        if nnunet.root is not None:
            benchmark_nnunet(nnunet.root, labelled, chosen, nnunet, report)
        else:
            with tempfile.TemporaryDirectory(prefix="nnunet-") as tmp:
                benchmark_nnunet(Path(tmp), labelled, chosen, nnunet, report)
    return report


def machine_info() -> dict:
    """What the numbers were measured on, including the load at the start."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg()[0], "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "gpu": None}
    try:
        import torch
    except ImportError:
        return info
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# --- output ---------------------------------------------------------------------------------


def _span(stats: dict[str, float]) -> str:
    return f"{stats['median']:.3f} [{stats['min']:.3f}-{stats['max']:.3f}]"


def format_table(report: dict) -> str:
    """Human-readable tables of the report."""
    m = report["machine"]
    lines = [f"{m['cpus']} CPUs, load {m['load_average']:.1f} at start, GPU: {m['gpu'] or 'none'}; "
             f"{report['repeats']} timed repeats after {report['warmup']} warm-up; seconds as median [min-max]",
             f"model: {report['model']['dir']}{' (random weights)' if report['model'].get('random_weights') else ''}, widths {report['model']['widths']}", ""]
    header = ["volume", "model", "configuration", *STAGES, "total", "vol/s", "slices/s", "RSS MB", "GPU MB"]
    rows = [[r["volume"], r.get("model", "?"), r["config"], *(f"{r['stages'][s]['median']:.3f}" for s in STAGES), _span(r["stages"]["total"]),
             f"{r['volumes_per_s']:.2f}", f"{r['slices_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
             "-" if r["gpu_peak_mb"] is None else f"{r['gpu_peak_mb']:.0f}"] for r in report["results"]]
    lines += _grid(header, rows)
    if report["process"]:
        lines += ["", "whole spider-segment process (start, imports, model load, segmentation, write):"]
        lines += _grid(["volume", "model", "device", "backend", "wall s", "vol/s", "slices/s", "RSS MB"],
                       [[p["volume"], p.get("model") or "?", p["device"], p.get("backend") or "?", _span(p["wall_s"]), f"{p['volumes_per_s']:.2f}", f"{p['slices_per_s']:.1f}", f"{p['peak_rss_mb']:.0f}"] for p in report["process"]])
    nnunet = report.get("nnunet")
    if nnunet and "runs" in nnunet:
        plan = nnunet["plan"]
        lines += ["", f"nnU-Net v2 3d_fullres (1 fold, random weights, CPU): patch {plan['patch_size']} at {plan['spacing']} mm, planned from {plan['source']}"]
        lines += _grid(["volume", "mirroring", "import s", "load s", "predict s", "RSS MB", "nnU-Net predict / spider-segment process"],
                       [[r["volume"], "on" if r["mirroring"] else "off", f"{r['import_s']:.1f}", f"{r['load_s']:.1f}", f"{r['predict_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                         "-" if r["ratio_to_spider_segment"] is None else f"{r['ratio_to_spider_segment']:.1f}x"] for r in nnunet["runs"]])
    elif nnunet:
        lines += ["", f"nnU-Net skipped: {nnunet['skipped']}"]
    lines += [""] + [f"skipped {s['config']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines).rstrip() + "\n"


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*row) for row in rows]


def plot(report: dict, path: Path) -> Path:
    """PNG: one panel per volume, a bar per configuration stacked by stage (median seconds), and
    the whole spider-segment process beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v["name"] for v in report["volumes"]]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.2 + 0.45 * (len(report["results"]) // max(1, len(names)) + 3) * len(names)), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, name in zip(axes[:, 0], names):
        rows = [r for r in report["results"] if r["volume"] == name]
        labels = [r["config"] for r in rows]
        left = [0.0] * len(rows)
        for color, stage in zip(colors, STAGES):
            widths = [r["stages"][stage]["median"] for r in rows]
            ax.barh(labels, widths, left=left, color=color, label=stage)
            left = [a + b for a, b in zip(left, widths)]
        for p in (p for p in report["process"] if p["volume"] == name):
            ax.barh(f"spider-segment process ({', '.join(filter(None, (p['device'], p.get('backend'))))})", p["wall_s"]["median"], color="0.6", label="whole process")
        ax.invert_yaxis()
        ax.set_title(f"{name}: {' x '.join(map(str, next(v['shape'] for v in report['volumes'] if v['name'] == name)))} (slices first)", fontsize=10)
        ax.set_xlabel("seconds (median)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- command line ---------------------------------------------------------------------------


def _split(text: str, choices: tuple[str, ...], flag: str) -> list[str]:
    values = list(choices) if text == "all" else [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in choices]
    if bad or not values:
        raise BenchmarkError(f"{flag}: expected 'all' or a comma-separated list of {', '.join(choices)}, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spider-benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="folder of volumes (default: synthetic volumes with real SPIDER geometries)")
    parser.add_argument("--volumes", default=",".join(DEFAULT_VOLUMES), help="synthetic volumes to make when no --input (default %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder, or a folder of model folders routed by slice spacing (default: the bundled models)")
    parser.add_argument("--random-model", action="store_true", help="benchmark an untrained model of the default architecture instead of --model")
    parser.add_argument("--backend", default="all", help=f"'all' or comma-separated {', '.join(BACKEND_CHOICES)} (default all)")
    parser.add_argument("--device", default="all", help="'all', cpu or cuda (default all; unavailable ones are skipped with the reason)")
    parser.add_argument("--precision", default="all", help="'all' or comma-separated fp32, fp16 (PyTorch, CUDA only), bf16 (OpenVINO, CPUs with native bf16) (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default %(default)s)")
    parser.add_argument("--no-process", action="store_true", help="skip timing the whole spider-segment process")
    parser.add_argument("--vs-nnunet", action="store_true", help="also time nnU-Net v2 3d_fullres (CPU) on the same volumes")
    parser.add_argument("--nnunet-volumes", default="", help="comma-separated volume names for nnU-Net (default: all)")
    parser.add_argument("--nnunet-mirroring", choices=("off", "on", "both"), default="both", help="nnU-Net test-time mirroring (default both)")
    parser.add_argument("--nnunet-plan-sequences", default=",".join(DEFAULT_VOLUMES),
                        help="sequences of the real SPIDER grids nnU-Net plans from (default %(default)s; t1,t2 gives the plan of a set with few T2-SPACE series)")
    parser.add_argument("--nnunet-dir", type=Path, help="keep nnU-Net's planned tree here and reuse it on later runs (default: temporary)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON")
    parser.add_argument("--plot", type=Path, help="write a PNG of the stage breakdown")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        backends = _split(args.backend, BACKEND_CHOICES, "--backend")
        devices = _split(args.device, DEVICE_CHOICES, "--device")
        precisions = _split(args.precision, PRECISION_CHOICES, "--precision")
        with tempfile.TemporaryDirectory(prefix="spider-benchmark-") as tmp:
            from algorithm.routing import holds_model

            model = random_model(Path(tmp) / "random_model") if args.random_model else args.model
            if not holds_model(model):
                raise BenchmarkError(f"no model in {model} (no config.json, nor model folders with one): pass --model DIR or --random-model")
            if args.input is not None:
                from algorithm.io import is_volume_file

                if not args.input.is_dir():
                    raise BenchmarkError(f"{args.input}: not a folder")
                volumes = [(p, None) for p in sorted(args.input.iterdir()) if is_volume_file(p)]
                if not volumes:
                    raise BenchmarkError(f"{args.input}: no volume files (.mha, .nii.gz, .nrrd, ...)")
            else:
                volumes = synthetic_volumes(Path(tmp) / "volumes", [v.strip() for v in args.volumes.split(",") if v.strip()])
            nnunet = NnunetOptions(
                [v.strip() for v in args.nnunet_volumes.split(",") if v.strip()],
                {"off": [False], "on": [True], "both": [False, True]}[args.nnunet_mirroring],
                args.nnunet_dir,
                plan_sequences=_split(args.nnunet_plan_sequences, DEFAULT_VOLUMES, "--nnunet-plan-sequences"),
            )
            report = run_benchmark(volumes, model, backends, devices, precisions, args.repeats, args.warmup, not args.no_process, nnunet if args.vs_nnunet else None)
            report["model"]["random_weights"] = args.random_model
    except BenchmarkError as err:
        print(f"spider-benchmark: error: {err}", file=sys.stderr)
        return 2
    print(format_table(report), end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
