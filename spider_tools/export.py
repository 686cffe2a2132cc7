"""Checkpoint -> model folder (config.json, model.pt, model.onnx) -> TensorRT engine.

``python -m spider_tools.export RUN_DIR_OR_CHECKPOINT [OUT_DIR]``: exports ONNX and checks it against
PyTorch on CPU; where TensorRT and a GPU are present it also builds an FP16 engine for this GPU
and checks it against ONNX Runtime. ``--engine-only MODEL_DIR`` builds just the engine from an
existing model.onnx and needs no torch (so it runs inside the inference container on a T4).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from algorithm.backend_base import CPU_PROVIDER, CUDA_PROVIDER, FP16_ONNX_NAME, ONNX_NAME, WEIGHTS_NAME, BackendUnavailable
from algorithm.config import CONFIG_NAME, Config

OPSET = 17
ONNX_ATOL, ONNX_MIN_AGREEMENT = 1e-3, 0.9999  # FP32 ONNX Runtime vs PyTorch: max |logit diff|, same label
FP16_ATOL, FP16_MIN_AGREEMENT = 0.25, 0.999  # FP16 graphs and engines vs FP32 ...
FP16_MARGIN = 0.05  # ... counting labels only where the FP32 top-two logits are this far apart
CHECK_SHAPE = (2, 384, 320)  # batch, height, width of the parity checks


class ExportError(Exception):
    """An export or parity check failed; reported as one line."""


def _load_model(model_dir: Path):
    from algorithm.model import build_model, load_weights

    config = Config.load(model_dir)
    model = build_model(config)
    model.load_state_dict(load_weights(model_dir / WEIGHTS_NAME))
    return model.eval(), config


def _half(model):
    """``model`` converted to FP16, wrapped to take and return float32."""
    import torch

    class Half(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner.half()

        def forward(self, x):
            return self.inner(x.half()).float()

    return Half(model)


def export_onnx(model_dir: str | Path, out_path: str | Path | None = None, half: bool = False) -> Path:
    """Export ``model_dir``'s weights to ONNX (opset 17) with dynamic batch, height and width;
    ``half`` exports an FP16 graph with float32 input and output (for strongly typed TensorRT)."""
    import torch

    model_dir = Path(model_dir)
    model, config = _load_model(model_dir)
    if half:
        model = _half(model)
    out_path = Path(out_path) if out_path else model_dir / (FP16_ONNX_NAME if half else ONNX_NAME)
    size = 4 * config.divisor
    example = torch.zeros(1, config.in_channels, size, size)
    torch.onnx.export(
        model,
        example,
        str(out_path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}},
        opset_version=OPSET,
        dynamo=False,
    )
    return out_path


def check_batch(config: Config, seed: int = 0) -> np.ndarray:
    """A reproducible real-sized input batch (N, C, H, W) for the parity checks."""
    n, h, w = CHECK_SHAPE
    return np.random.default_rng(seed).standard_normal((n, config.in_channels, h, w), dtype=np.float32)


def compare_logits(reference: np.ndarray, other: np.ndarray, margin: float = 0.0) -> dict[str, float]:
    """Max absolute logit difference, and the fraction of pixels with the same argmax label
    among those whose reference top-two logit margin is at least ``margin`` (pixels closer to
    a tie than the expected rounding error are not counted)."""
    top2 = np.partition(reference, -2, axis=1)
    decided = (top2[:, -1] - top2[:, -2]) >= margin
    same = reference.argmax(1) == other.argmax(1)
    return {
        "max_abs_diff": float(np.abs(reference - other).max()),
        "label_agreement": float(same[decided].mean()) if decided.any() else 1.0,
    }


def run_onnx(path: Path, batch: np.ndarray, provider: str = CPU_PROVIDER) -> np.ndarray:
    """Logits of an ONNX file with ONNX Runtime on one execution provider (ExportError if that
    provider does not load: ONNX Runtime would silently run on the CPU instead)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=[provider])
    if provider not in session.get_providers():
        raise ExportError(f"ONNX Runtime's {provider} did not load for {path.name} (session providers: {', '.join(session.get_providers())})")
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def verify_onnx(model_dir: str | Path, name: str = ONNX_NAME, margin: float = 0.0, provider: str = CPU_PROVIDER) -> dict[str, float]:
    """Run PyTorch (FP32, CPU) and ONNX Runtime (on ``provider``) on the ONNX file ``name``, on the
    same real-sized batch, and compare (see ``compare_logits``)."""
    import torch

    model_dir = Path(model_dir)
    model, config = _load_model(model_dir)
    batch = check_batch(config)
    with torch.inference_mode():
        reference = model(torch.from_numpy(batch)).numpy()
    return compare_logits(reference, run_onnx(model_dir / name, batch, provider), margin)


def prepare_model_dir(source: Path, out_dir: Path) -> Path:
    """Copy a run folder's or checkpoint's config and weights into ``out_dir`` (as model.pt).

    The weights are stored in half precision (half the size; every backend computes in FP32 or
    its own precision from them), and the ONNX files are exported from these very weights."""
    if not source.exists():
        raise ExportError(f"{source}: no such file or folder")
    weights = source / WEIGHTS_NAME if source.is_dir() else source
    config = weights.parent / CONFIG_NAME
    if not weights.is_file():
        raise ExportError(f"{source}: no {WEIGHTS_NAME} here (give a run folder or a checkpoint file)")
    if not config.is_file():
        raise ExportError(f"{source}: no {CONFIG_NAME} beside {weights.name}")
    out_dir.mkdir(parents=True, exist_ok=True)
    Config.load(config).save(out_dir)
    if weights.resolve() != (out_dir / WEIGHTS_NAME).resolve():
        import torch

        from algorithm.model import load_weights

        state = load_weights(weights)
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, out_dir / WEIGHTS_NAME)
    return out_dir


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt.__version__


def build_engine(model_dir: str | Path, workspace_gb: float = 4.0) -> Path:
    """Build an FP16 TensorRT engine of ``model_dir``'s ONNX model for this GPU, with one
    optimisation profile from the model config, a timing cache, and a JSON sidecar.

    TensorRT 10 lowers precision with the FP16 builder flag; TensorRT 11 builds strongly typed
    networks only, so it is given the FP16 graph (``model.fp16.onnx``, exported beforehand)."""
    import tensorrt as trt

    from algorithm.tensorrt_backend import INPUT_NAME, device_info, engine_stem, profile_shapes, sha256

    model_dir = Path(model_dir)
    config = Config.load(model_dir)
    cc, gpu = device_info()
    major = int(trt.__version__.split(".")[0])
    onnx_path = model_dir / (ONNX_NAME if major < 11 else FP16_ONNX_NAME)
    if not onnx_path.is_file():
        raise ExportError(f"no {onnx_path.name} in {model_dir} (TensorRT {trt.__version__} needs it)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if major < 11:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    stem = engine_stem(cc, trt.__version__)
    cache_path = model_dir / f"{stem}.timing.cache"
    cache = builder_config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    shapes = profile_shapes(config)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    builder_config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    engine_path = model_dir / f"{stem}.engine"
    engine_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(builder_config.get_timing_cache().serialize()))
    meta = {
        "tensorrt_version": trt.__version__,
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "gpu": gpu,
        "precision": "fp16",
        "onnx": onnx_path.name,
        "onnx_sha256": sha256(onnx_path),  # the graph TensorRT built from (FP16 for TensorRT >= 11)
        "profile": {k: list(v) for k, v in shapes.items()},
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (model_dir / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return engine_path


def verify_engine(model_dir: str | Path) -> dict[str, float]:
    """Run the engine and ONNX Runtime (CPU, FP32) on the same real-sized batch and compare."""
    from algorithm.tensorrt_backend import TensorRTBackend

    model_dir = Path(model_dir)
    config = Config.load(model_dir)
    batch = check_batch(config, seed=1)
    return compare_logits(run_onnx(model_dir / ONNX_NAME, batch), TensorRTBackend(model_dir)(batch), FP16_MARGIN)


def _report(what: str, result: dict[str, float], atol: float, min_agreement: float) -> None:
    print(f"{what}: max |logit difference| {result['max_abs_diff']:.2e} (limit {atol:g}), label agreement {result['label_agreement']:.6f} (at least {min_agreement:g})")
    if result["max_abs_diff"] > atol or result["label_agreement"] < min_agreement:
        raise ExportError(f"{what} parity check failed")


def engine_step(model_dir: Path, workspace_gb: float) -> None:
    """Build and check the TensorRT engine, or say why it is skipped."""
    from algorithm.tensorrt_backend import device_info

    version = tensorrt_version()
    if version is None:
        print("TensorRT: not installed here, no engine built (ONNX Runtime will run the model)")
        return
    try:
        cc, gpu = device_info()
    except BackendUnavailable as err:
        print(f"TensorRT {version}: {err}, no engine built")
        return
    print(f"TensorRT {version}: building an FP16 engine for {gpu} (sm {cc[0]}.{cc[1]}); this takes minutes")
    path = build_engine(model_dir, workspace_gb)
    print(f"wrote {path}")
    _report("TensorRT FP16 vs ONNX Runtime FP32", verify_engine(model_dir), FP16_ATOL, FP16_MIN_AGREEMENT)


def onnx_cuda_step(model_dir: Path) -> None:
    """Check the FP16 graph on ONNX Runtime's CUDA provider (what a GPU runs), or say why not."""
    import onnxruntime as ort

    if CUDA_PROVIDER not in ort.get_available_providers():
        print("ONNX Runtime: no CUDA provider here, the FP16 graph was checked on the CPU only")
        return
    _report("ONNX FP16 on CUDA vs PyTorch (CPU)", verify_onnx(model_dir, FP16_ONNX_NAME, FP16_MARGIN, CUDA_PROVIDER), FP16_ATOL, FP16_MIN_AGREEMENT)


def export(source: Path, out_dir: Path, engine: bool = True, workspace_gb: float = 4.0) -> Path:
    """The whole export: model folder, ONNX, its parity check, and the TensorRT engine."""
    import warnings

    model_dir = prepare_model_dir(source, out_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for half in (False, True):
            print(f"wrote {export_onnx(model_dir, half=half)}")
    _report("ONNX FP32 vs PyTorch (CPU)", verify_onnx(model_dir), ONNX_ATOL, ONNX_MIN_AGREEMENT)
    _report("ONNX FP16 vs PyTorch (CPU)", verify_onnx(model_dir, FP16_ONNX_NAME, FP16_MARGIN), FP16_ATOL, FP16_MIN_AGREEMENT)
    onnx_cuda_step(model_dir)
    if engine:
        engine_step(model_dir, workspace_gb)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spider-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="run folder (config.json + model.pt), checkpoint file, or with --engine-only a model folder")
    parser.add_argument("out_dir", type=Path, nargs="?", default=None, help="model folder to write, e.g. algorithm/resources/models/thick-slice (not with --engine-only)")
    parser.add_argument("--engine-only", action="store_true", help="only build and check the TensorRT engine from SOURCE's model.onnx (no torch needed)")
    parser.add_argument("--no-engine", action="store_true", help="skip the TensorRT engine")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="TensorRT builder workspace limit (GiB)")
    args = parser.parse_args(argv)
    try:
        if args.engine_only:
            if not (args.source / ONNX_NAME).is_file():
                raise ExportError(f"{args.source}: no {ONNX_NAME} here")
            engine_step(args.source, args.workspace_gb)
        else:
            if args.out_dir is None:
                raise ExportError("name the model folder to write (e.g. algorithm/resources/models/thick-slice)")
            export(args.source, args.out_dir, not args.no_engine, args.workspace_gb)
    except (ExportError, OSError, ValueError) as err:
        print(f"spider-export: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
