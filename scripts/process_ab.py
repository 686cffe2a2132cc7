"""The whole ``spider-segment`` process with two model folders, side by side in one run:

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python scripts/process_ab.py MODEL_A MODEL_B
        [--synthetic t2,t1] [--repeats 5] [--random-widths 16,32,64,128,256,320]

Each round runs every volume with A, then with B (one warm-up round first, untimed); prints the
median wall time and peak RSS per model and volume, and B's time over A's. ``--random-widths``
replaces MODEL_B by an untrained model of MODEL_A's config with these widths (speed does not
depend on the weights), for checking a wider architecture before training it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_a", type=Path)
    parser.add_argument("model_b", type=Path, nargs="?")
    parser.add_argument("--synthetic", default="t2", help="comma-separated spider_tools.synthetic.GEOMETRIES (default t2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--random-widths", help="comma-separated widths of an untrained model B")
    args = parser.parse_args()
    if (args.model_b is None) == (args.random_widths is None):
        parser.error("give MODEL_B or --random-widths")

    from tqdm import tqdm

    from algorithm.config import Config
    from spider_tools.benchmark import random_model, segment_command, synthetic_volumes, time_process

    with tempfile.TemporaryDirectory() as tmp:
        models = {"A": args.model_a, "B": args.model_b}
        if args.random_widths:
            config = Config.load(args.model_a)
            config.widths = [int(w) for w in args.random_widths.split(",")]
            models["B"] = random_model(Path(tmp) / "random_b", config)
        volumes = synthetic_volumes(Path(tmp) / "volumes", args.synthetic.split(","))
        runs: dict[tuple[str, str], list[dict]] = {}
        for round_ in tqdm(range(args.repeats + 1), desc="rounds", unit="round"):
            for image, _ in volumes:
                for name, model in models.items():
                    result = time_process(segment_command(str(image), f"{tmp}/out", str(model), "cpu"))
                    if round_:
                        runs.setdefault((image.stem, name), []).append(result)
    for image, _ in volumes:
        medians = {}
        for name, model in models.items():
            results = runs[(image.stem, name)]
            medians[name] = statistics.median(r["wall_s"] for r in results)
            walls = " ".join(f"{r['wall_s']:.3f}" for r in results)
            print(f"{image.stem} {name} ({model.name}, backend {results[-1]['backend']}): median {medians[name]:.3f} s "
                  f"[{walls}], peak RSS {max(r['peak_rss_mb'] for r in results):.0f} MB")
        print(f"{image.stem} B / A: {medians['B'] / medians['A']:.2f}x")


if __name__ == "__main__":
    main()
