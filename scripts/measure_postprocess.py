"""Measure post-processing, old against new, in one run (issue 10).

    PYTHONPATH=$PWD python scripts/measure_postprocess.py [--baseline GIT_REF] [--model DIR] [--json FILE]

The network runs once per volume (class maps cached in --cache, keyed by the model files); then
each post-processing version (this tree's, and `algorithm/postprocess.py` at --baseline, default
`main`) turns the same class maps into instance masks, scored with spider-evaluate's metrics:

- spider-slices/t2 (52 real one-slice T2 volumes): fused labels, slices with stray components,
  class Dice, per-structure Dice;
- spider-t2space validation (6 cases; only 50 has a true instance mask, 18 is a training case with
  one, reported beside): per-structure (official) and class Dice, detection, fused, stray;
- spider-masks (33 real reference masks, no images): each mask's own class map post-processed
  must give back its structures (Dice per file over all structures, fused labels, strays);
- every set: voxels whose label differs from the old version's output (cases with any);
- post-processing time of a synthetic 120 x 640 x 512 T2-SPACE volume (the bundled model's
  prediction of it), both versions alternately, median of --repeats.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
KEYS = ("DiceScoreVertebrae", "DiceScoreDiscs", "ClassDiceVertebrae", "ClassDiceDiscs", "ClassDiceSpinalCanal",
        "DetectionRateVertebrae", "DetectionRateDiscs", "FusedLabels", "StrayComponents", "StrayComponentsFar")


def load_baseline(ref: str):
    """algorithm/postprocess (a module or, since issue 21, a package) as it is at git ``ref``, imported
    separately as ``baseline_postprocess``."""
    folder = Path(tempfile.mkdtemp())
    is_package = not subprocess.run(["git", "cat-file", "-e", f"{ref}:algorithm/postprocess/__init__.py"], cwd=REPO, capture_output=True).returncode
    archive = subprocess.run(["git", "archive", ref, "algorithm/postprocess" + ("" if is_package else ".py")], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    package = folder / "algorithm" / "postprocess"
    path, search = (package / "__init__.py", [str(package)]) if is_package else (folder / "algorithm" / "postprocess.py", None)
    spec = importlib.util.spec_from_file_location("baseline_postprocess", path, submodule_search_locations=search)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.postprocess


def model_key(model_dir: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(model_dir.rglob("*")):  # a model folder, or a root of model folders
        if path.is_file():
            digest.update(f"{path.relative_to(model_dir)}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def canonical(path: Path):
    """(canonical array, canonical spacing) of a volume file."""
    from algorithm.geometry import canonical_array
    from algorithm.io import read_image

    return canonical_array(read_image(path))


def predicted(name: str, volume: np.ndarray, spacing, segmenter, cache: Path) -> np.ndarray:
    from algorithm.pipeline import predict_classes

    path = cache / f"{name}.npy"
    if not path.exists():
        np.save(path, predict_classes(volume, spacing, segmenter))
    return np.load(path)


def cases(folder: Path, subset: str | None) -> list[str]:
    with (folder / "overview.csv").open() as f:
        rows = list(csv.DictReader(f))
    key = "new_file_name" if "new_file_name" in rows[0] else "name"
    return [row[key] for row in rows if subset is None or row.get("subset") == subset]


def score_set(names: list[str], folder: Path, versions: dict, segmenter, cache: Path) -> dict[str, dict[str, dict]]:
    """version -> case -> metrics."""
    from tqdm import tqdm

    from spider_tools.evaluate import evaluate_case

    out: dict[str, dict[str, dict]] = {v: {} for v in versions}
    for name in tqdm(names, desc=folder.name, unit="case", leave=False):
        image, spacing = canonical(folder / "images" / f"{name}.mha")
        ref, _ = canonical(folder / "masks" / f"{name}.mha")
        classes = predicted(name, image, spacing, segmenter, cache)
        labels = {version: postprocess(classes, spacing, segmenter.config_for(spacing[0])) for version, postprocess in versions.items()}
        for version in versions:
            out[version][name] = {**evaluate_case(ref, labels[version], spacing, surface=False), **changed(labels, version)}
    return out


def changed(labels: dict[str, np.ndarray], version: str) -> dict[str, int]:
    """Voxels whose label differs from the first version's."""
    first = next(iter(labels.values()))
    return {"VoxelsChanged": int(np.count_nonzero(labels[version] != first))}


def reproduce_masks(folder: Path, versions: dict, segmenter) -> dict[str, dict[str, dict]]:
    """version -> mask -> metrics of the mask's own class map put through post-processing."""
    from tqdm import tqdm

    from spider_tools.evaluate import evaluate_case
    from algorithm.labels import to_classes

    out: dict[str, dict[str, dict]] = {v: {} for v in versions}
    for path in tqdm(sorted(folder.glob("*.mha")), desc=folder.name, unit="mask", leave=False):
        ref, spacing = canonical(path)
        classes = np.ascontiguousarray(to_classes(ref))
        labels = {version: postprocess(classes, spacing, segmenter.config_for(spacing[0])) for version, postprocess in versions.items()}
        for version in versions:
            out[version][path.stem] = {**evaluate_case(ref, labels[version], spacing, surface=False), **changed(labels, version)}
    return out


def changes(scores: dict[str, dict]) -> str:
    """'voxels (cases)' that differ from the first version's output."""
    counts = [s["VoxelsChanged"] for s in scores.values()]
    return f"{sum(counts)} ({sum(c > 0 for c in counts)})"


def mean(scores: dict[str, dict], key: str) -> float:
    values = np.array([s[key] for s in scores.values()], dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def time_versions(versions: dict, segmenter, cache: Path, repeats: int) -> dict[str, float]:
    """Median seconds per version on the bundled model's class map of a synthetic T2-SPACE volume."""
    from spider_tools.synthetic import GEOMETRIES, canonical_grid, render

    geometry = GEOMETRIES["t2_SPACE"]
    grid, orient = canonical_grid(geometry["size"], geometry["spacing"], np.eye(3).ravel(), (0.0, 0.0, 0.0))
    path = cache / "synthetic_t2_SPACE.npy"
    if not path.exists():
        image, _ = render(grid, "t2", seed=0)
        predicted("synthetic_t2_SPACE", image, orient.spacing, segmenter, cache)
    classes = np.load(path)
    seconds: dict[str, list[float]] = {v: [] for v in versions}
    for _ in range(repeats):
        for version, postprocess in versions.items():
            start = time.perf_counter()
            postprocess(classes, orient.spacing, segmenter.config_for(orient.spacing[0]))
            seconds[version].append(time.perf_counter() - start)
    return {v: float(np.median(s)) for v, s in seconds.items()} | {"shape": list(classes.shape)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git ref of the post-processing to compare with (default main)")
    parser.add_argument("--model", type=Path, default=REPO / "algorithm" / "resources" / "models")
    parser.add_argument("--cache", type=Path, default=REPO / "out" / "measure_cache")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", type=Path, help="write every number (per case too) as JSON")
    args = parser.parse_args(argv)

    from spider_tools.evaluate import STRAY_FAR_MM
    from algorithm.pipeline import Models
    from algorithm.postprocess import postprocess

    segmenter = Models(args.model)  # each volume's model by its slice spacing
    cache = args.cache / model_key(args.model)
    cache.mkdir(parents=True, exist_ok=True)
    versions = {f"old ({args.baseline})": load_baseline(args.baseline), "new (this tree)": postprocess}
    report: dict = {"model": str(args.model), "versions": list(versions)}

    slices = DATA / "spider-slices" / "t2"
    report["slices"] = score_set(cases(slices, None), slices, versions, segmenter, cache)
    t2space = DATA / "spider-t2space"
    report["t2space"] = score_set(cases(t2space, "validation") + ["18_t2_SPACE"], t2space, versions, segmenter, cache)
    report["masks"] = reproduce_masks(DATA / "spider-masks", versions, segmenter)
    if not args.skip_timing:
        report["timing_s"] = time_versions(versions, segmenter, cache, args.repeats)

    print(f"model {args.model}")
    print(f"{'':48}" + "".join(f"{v:>22}" for v in versions))
    rows = [
        ("slices/t2 (52): fused labels, total", lambda s: sum(c["FusedLabels"] for c in s.values()), "{:.0f}"),
        ("slices/t2: slices with stray components", lambda s: sum(c["StrayComponents"] > 0 for c in s.values()), "{:.0f}"),
        ("slices/t2: stray components, total", lambda s: sum(c["StrayComponents"] for c in s.values()), "{:.0f}"),
        (f"slices/t2: slices with strays > {STRAY_FAR_MM:g} mm off", lambda s: sum(c["StrayComponentsFar"] > 0 for c in s.values()), "{:.0f}"),
        (f"slices/t2: strays > {STRAY_FAR_MM:g} mm off, total", lambda s: sum(c["StrayComponentsFar"] for c in s.values()), "{:.0f}"),
    ]
    rows += [(f"slices/t2: {k}", lambda s, k=k: mean(s, k), "{:.4f}") for k in KEYS[:7]]
    rows += [("slices/t2: voxels changed (slices)", changes, "{}")]
    for label, fn, fmt in rows:
        print(f"{label:48}" + "".join(f"{fmt.format(fn(report['slices'][v])):>22}" for v in versions))
    validation = {v: {c: s for c, s in report["t2space"][v].items() if c != "18_t2_SPACE"} for v in versions}
    for key in KEYS:
        print(f"{'t2space validation (6): ' + key:48}" + "".join(f"{mean(validation[v], key):>22.4f}" for v in versions))
    print(f"{'t2space (7): voxels changed (cases)':48}" + "".join(f"{changes(report['t2space'][v]):>22}" for v in versions))
    for case in ("50_t2_SPACE", "18_t2_SPACE"):
        for key in KEYS[:2] + KEYS[7:]:
            print(f"{case + ' (true instances): ' + key:48}" + "".join(f"{report['t2space'][v][case][key]:>22.4f}" for v in versions))
    for label, fn, fmt in (
        ("spider-masks (33): OveralDiceScore, lowest file", lambda s: min(c["OveralDiceScore"] for c in s.values()), "{:.4f}"),
        ("spider-masks: OveralDiceScore, mean", lambda s: mean(s, "OveralDiceScore"), "{:.4f}"),
        ("spider-masks: fused labels, total", lambda s: sum(c["FusedLabels"] for c in s.values()), "{:.0f}"),
        ("spider-masks: stray components, total", lambda s: sum(c["StrayComponents"] for c in s.values()), "{:.0f}"),
        ("spider-masks: voxels changed (masks)", changes, "{}"),
    ):
        print(f"{label:48}" + "".join(f"{fmt.format(fn(report['masks'][v])):>22}" for v in versions))
    if "timing_s" in report:
        print(f"{'post-process s, synthetic T2-SPACE 120x640x512':48}" + "".join(f"{report['timing_s'][v]:>22.2f}" for v in versions))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
