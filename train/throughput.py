"""Training throughput (slices/s) of a config on this machine, with and without mixed precision
(where the device has it: CUDA, and CPUs with native bf16).

Speed does not depend on the data, so random volumes (image, classes and tissue maps) of SPIDER
T2-SPACE size stand in for it:
``python -m train.throughput [--config FILE] [--device cuda] [--steps 30] [--workers N [--[no-]render-ahead]] [--json FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def measure(config, device: str, steps: int, amp: bool, warmup: int = 5, workers: int = 0, compiled: bool = False, ahead: bool | None = None) -> dict[str, float]:
    """Median step time and slices/s of sampling + augmentation + optimisation for ``steps`` steps
    (``workers``: processes rendering the slices, as ``spider-train --workers``, the next batch's
    while this one trains where ``ahead``, by default as ``spider-train`` decides (``render_ahead``); ``compiled``: through
    ``torch.compile``, as ``spider-train --compile``, its compilation in the warm-up steps)."""
    import torch

    from train import augment
    from train.dataset import Volume
    from train.synth import N_TISSUES
    from train.train import BatchStream, Workers, amp_dtype, make_optimizer, render_ahead, train_step
    from algorithm.model import build_model

    rng = np.random.default_rng(0)
    shape = (20, 400, 320)
    volumes = [Volume(f"random{i}", rng.standard_normal(shape).astype(np.float16), rng.integers(0, 4, shape, dtype=np.uint8), 0.9,
                      rng.integers(0, N_TISSUES, shape, dtype=np.uint8)) for i in range(4)]
    gen = torch.Generator().manual_seed(0)
    p = augment.params(config.augment)
    pool = Workers(volumes, config, p, workers) if workers > 0 else None
    model = build_model(config).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    net = torch.compile(model) if compiled else model
    dtype = amp_dtype(device) if amp else None
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    stream = BatchStream(volumes, config, p, gen, device, pool, render_ahead(device, workers) if ahead is None else ahead)
    times, sample_times = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        x, y = stream.next()
        if device == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        train_step(net, optimizer, scaler, x, y, dtype, config.grad_clip)  # .item() syncs
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            sample_times.append(t1 - t0)
    if pool is not None:
        pool.close()
    step = float(np.median(times))
    return {
        "device": device, "amp": str(dtype).replace("torch.", "") if dtype else "fp32", "compiled": compiled, "batch": config.batch_size, "workers": workers, "ahead": stream.ahead,
        "patch": list(config.patch), "step_ms": 1000 * step, "sample_ms": 1000 * float(np.median(sample_times)),
        "slices_per_s": config.batch_size / step,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.throughput", description=__doc__)
    parser.add_argument("--config", type=Path, help="JSON of Config overrides (default: train/configs/bundled.json)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, help="override the config's batch size")
    parser.add_argument("--workers", type=int, default=0, help="processes rendering the training slices (spider-train --workers)")
    parser.add_argument("--render-ahead", action=argparse.BooleanOptionalAction, help="with --workers: render the next batch while this one trains (default: as spider-train decides)")
    parser.add_argument("--compile", action="store_true", help="also measure through torch.compile (spider-train --compile)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from algorithm.config import Config

    path = args.config or Path(__file__).parent / "configs" / "bundled.json"
    config = Config.from_dict(json.loads(path.read_text()))
    if args.batch_size:
        config.batch_size = args.batch_size
    from train.train import amp_dtype

    precisions = (False, True) if amp_dtype(args.device) else (False,)
    results = [measure(config, args.device, args.steps, amp, workers=args.workers, compiled=compiled, ahead=args.render_ahead)
               for compiled in ((False, True) if args.compile else (False,)) for amp in precisions]
    for r in results:
        print(f"{r['device']} {r['amp']:>8}{' compiled' if r['compiled'] else ''}: batch {r['batch']} x {r['patch']}, {r['workers']} workers{' rendering ahead' if r['ahead'] else ''}  step {r['step_ms']:.1f} ms (sampling+augmentation {r['sample_ms']:.1f} ms)  {r['slices_per_s']:.1f} slices/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
