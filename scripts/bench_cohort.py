"""Cohort throughput side by side in one run: the plain ``spider-segment`` loop against
``--workers 1`` and ``--workers 2`` on the same synthetic volumes (whole processes: start-up,
cluster, model loads and every case), and the start of a single-case run with this tree against
a baseline checkout (the same command, the same model).

    PYTHONPATH=$PWD python scripts/bench_cohort.py [--cases 20] [--geometry t2] [--model DIR]
        [--baseline DIR] [--repeats 3] [--json FILE]

The runs alternate within each repeat, each one first in turn; the medians are printed. Engine overhead is
the ``--workers 1`` wall time minus the plain loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
RUNS = {"plain loop": [], "--workers 1": ["--workers", "1"], "--workers 2": ["--workers", "2"]}


def make_cases(folder: Path, n: int, geometry: str) -> Path:
    """``n`` synthetic volumes of one of spider_tools.synthetic.GEOMETRIES (seeds 0..n-1) in ``folder``."""
    import SimpleITK as sitk
    from tqdm import tqdm

    from spider_tools.synthetic import GEOMETRIES, synthesize

    folder.mkdir(parents=True, exist_ok=True)
    grid = GEOMETRIES[geometry]
    for seed in tqdm(range(n), desc="synthesize", unit="volume", leave=False):
        image, _ = synthesize(grid["size"], grid["spacing"], contrast=geometry, seed=seed)
        sitk.WriteImage(image, str(folder / f"{geometry}_{seed:03d}.mha"), useCompression=True)
    return folder


def wall(code_root: Path, args: list[str]) -> float:
    """Seconds of one ``python -m algorithm.cli ARGS`` process importing the code under ``code_root``."""
    env = os.environ | {"PYTHONPATH": str(code_root)}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "algorithm.cli", *args], cwd=code_root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"spider-segment {' '.join(args)} exited {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return seconds


def bench(work: Path, n: int, geometry: str, model: Path | None, baseline: Path | None, repeats: int) -> dict:
    """Median wall seconds and cases per minute of each run over ``repeats``, and the single-case start times."""
    load = os.getloadavg()[0]
    cases = make_cases(work / "in", n, geometry)
    model_args = ["--model", str(model)] if model else []
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    single: dict[str, list[float]] = {"this tree": []} | ({"baseline": []} if baseline else {})
    one = sorted(cases.iterdir())[0]
    for r in range(repeats):
        order = list(RUNS.items())[r % len(RUNS):] + list(RUNS.items())[: r % len(RUNS)]  # each run first once in 3 repeats
        for i, (name, extra) in enumerate(order):
            times[name].append(wall(REPO, ["-i", str(cases), "-o", str(work / f"out-{r}-{i}"), *model_args, *extra]))
        for i, name in enumerate(single):
            root = REPO if name == "this tree" else baseline
            single[name].append(wall(root, ["-i", str(one), "-o", str(work / f"one-{r}-{i}"), *model_args]))
    runs = {name: {"seconds": round(median(t), 2), "cases_per_minute": round(60 * n / median(t), 1), "all": [round(x, 2) for x in t]}
            for name, t in times.items()}
    return {"cases": n, "geometry": geometry, "repeats": repeats, "cpus": os.cpu_count(), "load_average_at_start": load, "load_average_at_end": os.getloadavg()[0],
            "runs": runs, "engine_overhead_s": round(runs["--workers 1"]["seconds"] - runs["plain loop"]["seconds"], 2),
            "single_case_s": {name: {"median": round(median(t), 3), "all": [round(x, 3) for x in t]} for name, t in single.items()}}


def format_report(report: dict) -> str:
    lines = [f"{report['cases']} synthetic {report['geometry']} volumes, {report['cpus']} CPUs, load {report['load_average_at_start']:.1f} at start, "
             f"{report['load_average_at_end']:.1f} at the end, "
             f"median of {report['repeats']} (whole processes)", "", "run          wall s  cases/min", "-----------  ------  ---------"]
    lines += [f"{name:<11}  {r['seconds']:>6.2f}  {r['cases_per_minute']:>9.1f}" for name, r in report["runs"].items()]
    lines += ["", f"engine overhead (--workers 1 minus plain loop): {report['engine_overhead_s']:.2f} s", ""]
    lines += [f"single case, {name}: {r['median']:.3f} s (all {r['all']})" for name, r in report["single_case_s"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--geometry", default="t2", help="one of spider_tools.synthetic.GEOMETRIES (default t2)")
    parser.add_argument("--model", type=Path, help="model folder or model root (default: the bundled models)")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before the cohort runner, for the single-case start")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = bench(Path(tmp), args.cases, args.geometry, args.model, args.baseline, args.repeats)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
