"""Score a model on every real validation set here, per contrast, in one command.

    python -m train.score --model DIR [--data ../shared/data] [--json scores.json] [--baseline earlier.json]
    python -m train.score --model DIR --selection --backend torch     # the 2D selection sets and score of spider-train --validation 2d

Sets (``../shared/data``, see its README): ``spider-slices/t2`` (all 52 slices, the slices
with canal, and those with at least 1,000 canal pixels), ``spider-slices/t1t2-vertebrae`` central slices (>= 5,000 vertebra pixels) per
contrast, vertebra class only (its discs and canal are unlabelled), and the T2-SPACE validation
subset of ``spider-t2space``; then two synthetic sets that need no data, 24 T1 and 24 T2 volumes
from ``spider_tools.synthetic`` (the sample cases' generator) on fixed SPIDER-like grids: the only
T1 canal and disc this project can score, a proxy for real T1 that is steady across models where
one sample case is not (it also rewards familiarity with synthetic images: compare models trained
on the same mix). Every case goes through the inference pipeline with post-processing.
The slices are validation data: never train on them.

Metrics: class Dice (vertebra, disc, canal) pooled over each set's cases (sum of intersections over
sum of sizes, the volume-level figure SPIDER scores: a slice that holds a 2-pixel sliver of canal
weighs 2 pixels, not a whole case), with the mean over cases beside it, and "levels found", the share of
reference vertebra levels of which one predicted label covers at least 50 % of the pixels.
Partially visible vertebrae (101-125) are ignored: left out of both masks. In the spider-slices
masks, 7 means "any vertebra above T12" and often covers two vertebrae (the data's README), so
it counts towards class Dice but not as a level; the T2-SPACE masks number every vertebra.

``--baseline`` (an earlier ``--json``, e.g. another backend or precision) adds the differences,
this run minus that one, per set and metric, and the largest of them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithm.labels import CANAL_LABEL, DISC_OFFSET, VERTEBRA, to_classes

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CENTRAL_VERTEBRA_PX = 5000
# the slices with canal hold 2-617 or >= 1,119 canal pixels: the first are lateral cuts through the
# canal's edge, where class Dice of a sliver says little about the canal (threshold set after
# looking at that distribution, 2026-11-30)
CENTRAL_CANAL_PX = 1000
SLICES_CATCH_ALL = 7  # spider-slices: "any vertebra above" (1 = L5 ... 6 = T12), not one level
KEYS = ("vertebra", "disc", "canal")
SYNTHETIC_VOLUMES = 24  # per contrast; grids and seeds fixed 2026-11-30 before any model was scored on them
SYNTHETIC_SEED = 1000
THICK_MM = 4.4  # thick-slab T2-SPACE validation: the 0.9 mm slices averaged into slabs of this thickness
SELECTION_SYNTHETIC = 8  # per contrast in the 2D selection sets (the first of the 24 scored ones)
CLASS_LABELS = np.array([0, VERTEBRA, DISC_OFFSET + 1, CANAL_LABEL], dtype=np.int32)  # class map -> SPIDER values score_case reads


@dataclass(frozen=True)
class Item:
    """One reference case of a set: image and mask files, and which classes are labelled."""

    name: str
    image: Path
    mask: Path
    classes: tuple[str, ...]
    catch_all: int | None = None  # a vertebra value that may hold several vertebrae: not a level

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        """Image and mask in the canonical layout, with the canonical spacing (train.dataset's reader)."""
        from train.dataset import Case, load_canonical

        return load_canonical(Case(self.name, self.image, self.mask, ""))


@dataclass(frozen=True)
class SyntheticItem:
    """One synthetic volume of ``spider_tools.synthetic``: its grid, contrast and seed."""

    name: str
    contrast: str
    seed: int
    size: tuple[int, int, int]  # ITK (x, y, z)
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    classes: tuple[str, ...] = KEYS
    catch_all: int | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        """Image and mask in the canonical layout, with the canonical spacing."""
        from algorithm.geometry import canonical_array
        from spider_tools.synthetic import synthesize

        image, mask = synthesize(self.size, self.spacing, self.direction, self.contrast, self.seed)
        (volume, spacing), (labels, _) = canonical_array(image), canonical_array(mask)
        return volume, labels, spacing


@dataclass(frozen=True)
class ThickItem:
    """A thin-slice case acquired as thick slices: ``Item``'s volume with its sagittal slices averaged
    in contiguous slabs of about ``thickness`` mm, each slab labelled by its central thin slice."""

    item: Item
    thickness: float = THICK_MM

    @property
    def name(self) -> str:
        return self.item.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.item.classes

    @property
    def catch_all(self) -> int | None:
        return self.item.catch_all

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        volume, labels, spacing = self.item.load()
        return thicken(volume, labels, spacing, self.thickness)


def thicken(volume: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float], thickness: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Canonical (sagittal-first) volume and labels as contiguous slabs of ``round(thickness /
    spacing[0])`` slices: the image averaged over each slab, the labels of its central slice."""
    n = max(1, round(thickness / spacing[0]))
    slabs = volume.shape[0] // n
    image = volume[: slabs * n].astype(np.float32).reshape(slabs, n, *volume.shape[1:]).mean(axis=1)
    return image, labels[n // 2 : slabs * n : n], (spacing[0] * n, spacing[1], spacing[2])


def synthetic_sets(volumes: int = SYNTHETIC_VOLUMES) -> dict[str, list[SyntheticItem]]:
    """``volumes`` synthetic T1 and as many T2 volumes (the same spines and grids in both) like SPIDER's
    T1/T2 series: 13-18 sagittal slices of 3.3-4.8 mm, 0.55-0.9 mm in-plane over a 260-300 mm
    field of view, sagittal axis first (LPS) or last (PIR) in turn."""
    from spider_tools.samples import LPS, PIR

    grids = []
    for i in range(volumes):
        rng = np.random.default_rng(SYNTHETIC_SEED + i)
        thickness, pixel, fov = rng.uniform(3.3, 4.8), rng.uniform(0.55, 0.9), rng.uniform(260, 300)
        slices, rows = int(rng.integers(13, 19)), int(round(fov / pixel))
        lps = i % 2 == 0
        size, spacing = ((slices, rows, rows), (thickness, pixel, pixel)) if lps else ((rows, rows, slices), (pixel, pixel, thickness))
        grids.append((SYNTHETIC_SEED + i, size, spacing, LPS if lps else PIR))
    return {f"synthetic {contrast.upper()} ({volumes})": [SyntheticItem(f"{contrast}-{seed}", contrast, seed, size, spacing, direction)
                                                         for seed, size, spacing, direction in grids]
            for contrast in ("t1", "t2")}


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "overview.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def item(folder: Path, name: str, classes: tuple[str, ...], catch_all: int | None = None) -> Item:
    """The case ``name`` of a folder with images/ and masks/."""
    return Item(name, folder / "images" / f"{name}.mha", folder / "masks" / f"{name}.mha", classes, catch_all)


def central_slices(folder: Path, contrast: str) -> list[Item]:
    """The central slices (at least CENTRAL_VERTEBRA_PX vertebra pixels) of one contrast of
    spider-slices/t1t2-vertebrae, vertebra class only."""
    return [item(folder, r["name"], ("vertebra",), SLICES_CATCH_ALL) for r in _rows(folder)
            if r["contrast"] == contrast and int(r["vertebra_px"]) >= CENTRAL_VERTEBRA_PX]


def validation_sets(data: Path) -> dict[str, list[Item]]:
    """The sets to score, by name; a set whose folder is missing is left out."""
    sets: dict[str, list[Item]] = {}
    t2 = data / "spider-slices" / "t2"
    if t2.is_dir():
        rows = _rows(t2)
        for name, min_canal_px in (("all", 0), ("with canal", 1), (f"canal >= {CENTRAL_CANAL_PX} px", CENTRAL_CANAL_PX)):
            sets[f"t2 slices, {name}"] = [item(t2, r["name"], KEYS, SLICES_CATCH_ALL) for r in rows if int(r["canal_px"]) >= min_canal_px]
    vert = data / "spider-slices" / "t1t2-vertebrae"
    if vert.is_dir():
        for contrast in ("T1", "T2"):
            sets[f"{contrast} central slices (vertebra)"] = central_slices(vert, contrast)
    space = data / "spider-t2space"
    if space.is_dir():
        sets["T2-SPACE validation"] = [
            item(space, r["new_file_name"], KEYS) for r in _rows(space) if r["subset"] == "validation"
        ]
    return sets


def selection_sets(data: Path) -> dict[str, list]:
    """The 2D validation that chooses a thick-slice (T1/T2) model's checkpoints: the T2-SPACE
    validation cases as thick slabs, the spider-slices T2 slices with canal, the central T1 and T2
    slices, and the first SELECTION_SYNTHETIC synthetic T1 and T2 volumes (fixed 2026-12-06, before
    any model was scored on them). Selecting on the slices makes them selection figures, no longer
    untouched held-out ones."""
    sets = validation_sets(data)
    chosen = {name: sets[name] for name in ("t2 slices, with canal", "T1 central slices (vertebra)", "T2 central slices (vertebra)") if name in sets}
    if "T2-SPACE validation" in sets:
        chosen["T2-SPACE validation, thick slabs"] = [ThickItem(it) for it in sets["T2-SPACE validation"]]
    for name, items in synthetic_sets().items():
        chosen[name.replace(f"({SYNTHETIC_VOLUMES})", f"({SELECTION_SYNTHETIC} of {SYNTHETIC_VOLUMES})")] = items[:SELECTION_SYNTHETIC]
    return chosen


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2 * int((a & b).sum()) / total if total else math.nan


def without_partial(reference: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays with the partially visible reference vertebrae (101-125) set to background: left
    out of the scoring."""
    ignore = (reference > 100) & (reference < 200)
    return np.where(ignore, 0, reference), np.where(ignore, 0, prediction)


def score_case(reference: np.ndarray, prediction: np.ndarray, classes: tuple[str, ...], catch_all: int | None = None) -> dict[str, float]:
    """Class Dice of the labelled classes (with the intersection and summed sizes that pool them
    over a set) and vertebra levels found/total of one case (SPIDER values in both arrays; partially visible reference vertebrae 101-125 are ignored; the
    ``catch_all`` value counts for Dice but is not a level)."""
    reference, prediction = without_partial(reference, prediction)
    ref_cls, pred_cls = to_classes(reference), to_classes(prediction)
    scores: dict[str, float] = {}
    for c, key in enumerate(KEYS, start=VERTEBRA):
        if key in classes:
            ref, pred = ref_cls == c, pred_cls == c
            scores.update({key: _dice(ref, pred), f"{key}_intersection": int((ref & pred).sum()), f"{key}_sizes": int(ref.sum()) + int(pred.sum())})
    levels = [v for v in np.unique(reference) if 0 < v < 100 and v != catch_all]
    found = 0
    for level in levels:
        inside = prediction[reference == level]
        inside = inside[(inside > 0) & (to_classes(inside) == VERTEBRA)]
        if inside.size and np.bincount(inside).max() >= 0.5 * (reference == level).sum():
            found += 1
    return {**scores, "levels_found": found, "levels": len(levels)}


def summarize(per_case: list[dict[str, float]]) -> dict[str, float]:
    """A set's figures from its cases' ``score_case``: per class the pooled Dice (``<class>``) and
    the mean over cases (``<class>_mean``), and the share of levels found."""
    summary: dict = {"cases": len(per_case)}
    for key in KEYS:
        scored = [c for c in per_case if key in c]
        if scored:
            sizes = sum(c[f"{key}_sizes"] for c in scored)
            summary[key] = 2 * sum(c[f"{key}_intersection"] for c in scored) / sizes if sizes else math.nan
            values = [c[key] for c in scored if not math.isnan(c[key])]
            summary[f"{key}_mean"] = float(np.mean(values)) if values else math.nan
    levels = sum(c["levels"] for c in per_case)
    summary["levels_found"] = sum(c["levels_found"] for c in per_case) / levels if levels else math.nan
    return summary


def selection_score(results: dict[str, dict[str, float]]) -> float:
    """One number to choose checkpoints by: the mean over sets of the mean pooled class Dice."""
    return float(np.mean([np.nanmean([s[k] for k in KEYS if k in s]) for s in results.values()]))


def score_sets(model_dir: Path | None, data: Path, backend: str = "auto", sets: list[str] | None = None, selection: bool = False) -> dict[str, dict[str, float]]:
    """Segment every case of every set with the model and return per-set metrics (each case's
    own under ``per_case``); ``selection``: the 2D selection sets instead (``selection_sets``)."""
    from tqdm import tqdm

    from algorithm.pipeline import Models, segment_volume

    segmenter = Models(model_dir, backend)  # each case goes to the model its slice spacing routes to
    results = {}
    for name, items in (selection_sets(data) if selection else {**validation_sets(data), **synthetic_sets()}).items():
        if sets and name not in sets:
            continue
        per_case = []
        for it in tqdm(items, desc=name, unit="case", leave=False):
            volume, reference, spacing = it.load()
            prediction = segment_volume(volume, spacing, segmenter).astype(np.int32)
            per_case.append(score_case(reference.astype(np.int32), prediction, it.classes, it.catch_all))
        results[name] = {**summarize(per_case), "per_case": {it.name: c for it, c in zip(items, per_case)}}
    return results


def format_scores(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per set, class Dice pooled over the set (mean over its cases)."""
    lines = ["| set | cases | vertebra | disc | canal | levels found |", "| --- | --- | --- | --- | --- | --- |"]
    for name, s in results.items():
        cells = [f"{s[k]:.3f} ({s[f'{k}_mean']:.3f})" if k in s else "" for k in KEYS] + [f"{s['levels_found']:.3f}"]
        lines.append(f"| {name} | {s['cases']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_differences(results: dict[str, dict], baseline: dict[str, dict]) -> str:
    """A Markdown table of ``results`` minus ``baseline`` for the sets and metrics both have, then
    the largest absolute class Dice difference."""
    lines = ["| set | vertebra | disc | canal | levels found |", "| --- | --- | --- | --- | --- |"]
    largest = 0.0
    for name, s in results.items():
        if name not in baseline:
            continue
        cells = []
        for key in (*KEYS, "levels_found"):
            if key in s and key in baseline[name]:
                delta = s[key] - baseline[name][key]
                largest = max(largest, abs(delta)) if key in KEYS else largest
                cells.append(f"{delta:+.4f}")
            else:
                cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", f"largest class Dice difference: {largest:.4f}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder, or a folder of model folders routed by slice spacing (default: the bundled models)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with spider-slices/ and spider-t2space/")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "openvino", "torch"))
    parser.add_argument("--set", action="append", dest="sets", help="score only this set (repeatable)")
    parser.add_argument("--selection", action="store_true", help="score the 2D selection sets (spider-train --validation 2d) and print their selection score")
    parser.add_argument("--json", type=Path, help="write the scores here, with every case's scores under per_case")
    parser.add_argument("--baseline", type=Path, help="an earlier --json: also print this run minus that one")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"train.score: error: {args.data} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 1
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    results = score_sets(args.model, args.data, args.backend, args.sets, args.selection)
    print(format_scores(results))
    if args.selection:
        print(f"\nselection score: {selection_score(results):.4f}")
    if baseline is not None:
        print("\nthis run minus " + str(args.baseline) + ":\n" + format_differences(results, baseline))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
