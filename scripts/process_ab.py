"""The whole ``spider-segment`` process with several model folders, side by side in one run:

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python scripts/process_ab.py MODEL_A [MODEL_B ...]
        [--synthetic t2,t1] [--repeats 5] [--random-widths 16,32,64,128,256,320 ...]

Each round runs every volume with each model in turn (one warm-up round first, untimed); prints
the median wall time and peak RSS per model and volume, and each model's time over the first's.
Each ``--random-widths`` adds an untrained model of MODEL_A's config with these widths (speed
does not depend on the weights), for checking a wider architecture before training it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--synthetic", default="t2", help="comma-separated spider_tools.synthetic.GEOMETRIES (default t2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--random-widths", action="append", default=[], help="comma-separated widths of an untrained model (repeatable)")
    args = parser.parse_args()
    if len(args.models) + len(args.random_widths) < 2:
        parser.error("give two models or more (folders, or --random-widths)")

    from tqdm import tqdm

    from algorithm.config import Config
    from spider_tools.benchmark import random_model, segment_command, synthetic_volumes, time_process

    with tempfile.TemporaryDirectory() as tmp:
        models = {f"{chr(65 + i)} ({path.name})": path for i, path in enumerate(args.models)}
        config = Config.load(args.models[0])
        for widths in args.random_widths:
            config.widths = tuple(int(w) for w in widths.split(","))
            name = f"{chr(65 + len(models))} (untrained {widths})"
            models[name] = random_model(Path(tmp) / f"random_{len(models)}", config)
        volumes = synthetic_volumes(Path(tmp) / "volumes", args.synthetic.split(","))
        runs: dict[tuple[str, str], list[dict]] = {}
        for round_ in tqdm(range(args.repeats + 1), desc="rounds", unit="round"):
            for image, _ in volumes:
                for name, model in models.items():
                    result = time_process(segment_command(str(image), f"{tmp}/out", str(model), "cpu"))
                    if round_:
                        runs.setdefault((image.stem, name), []).append(result)
    for image, _ in volumes:
        first = None
        for name in models:
            results = runs[(image.stem, name)]
            median = statistics.median(r["wall_s"] for r in results)
            first = first or median
            walls = " ".join(f"{r['wall_s']:.3f}" for r in results)
            print(f"{image.stem} {name}, backend {results[-1]['backend']}: median {median:.3f} s ({median / first:.2f}x) "
                  f"[{walls}], peak RSS {max(r['peak_rss_mb'] for r in results):.0f} MB")


if __name__ == "__main__":
    main()
