"""spider-evaluate: the SPIDER challenge's evaluation of instance masks (Dice, detection rate, ASD).

Written from a reading of the official SPIDER grand-challenge evaluation container
(``evaluation.py`` of the SPIDER challenge, van der Graaf et al. 2024); no code was copied. Details
followed, per case:

- Every reference value > 0 is one structure. It is matched to the predicted value (> 0) that covers
  most of its voxels (ties go to the smallest value). A predicted value may be matched to several
  reference structures; predicted structures without reference are ignored. So label numbering,
  either convention or any permutation, does not change scores.
- Dice per structure; a structure without any overlapping prediction scores 0.
- Categories by reference value: 1-99 vertebrae, 100 spinal canal, > 200 discs. Values 101-200
  (partially visible vertebrae) count only in the overall scores.
- Dice < 0.1 is a missed structure: left out of DiceScoreVertebrae / DiceScoreDiscs, counted against
  DetectionRateVertebrae / DetectionRateDiscs. DiceScoreSpinalCanal and OveralDiceScore (the mean
  over every reference structure) keep missed structures with their low Dice.
- ASD: symmetric average surface distance in mm. Surfaces are the voxels that an erosion with the
  full 3x3x3 neighbourhood removes (voxels on the volume's edge are surface); the distances from
  each surface to the other one are pooled and averaged. ASD is computed for every matched
  structure, also for missed ones. A structure without any overlapping prediction has no ASD (NaN),
  which makes its category's ASD and OveralASD NaN for that case, as ``np.mean`` does in the
  official code.
- Over cases: mean and sample standard deviation (ddof=1), skipping NaN (pandas' defaults, as in
  the official code). A category with no detected structure (e.g. every vertebra missed) has an
  undefined mean Dice (NaN) and leaves that case out of the category's mean.

Where this module differs from the official code:

- Spacing order. The official code passes ``image.GetSpacing()``, which is (x, y, z), as the
  sampling of arrays in SimpleITK's (z, y, x) order, so the spacing of x is applied along z and vice
  versa. On anisotropic volumes its ASD values are therefore not distances in mm. By default ASD
  here uses each axis' own spacing; ``official_spacing_order=True`` (``--official-spacing-order``)
  applies the spacing reversed, as the official code does, to reproduce leaderboard numbers.
  Dice and detection rates do not depend on spacing.
- Undefined values are NaN, where the official code writes 999 (no canal in the reference) or
  raises (a reference without vertebrae or discs).
- Class-level Dice (all vertebrae incl. 101-125 merged, all discs merged, canal; by value, see
  algorithm.labels) is added: ClassDiceVertebrae, ClassDiceDiscs, ClassDiceSpinalCanal.
- ASD is computed on a crop around each matched pair (bounding box plus one voxel), which gives the
  same numbers as on the full volume, fast enough for 120 x 640 x 512 volumes.
- Two instance-error counts are added (not official): FusedLabels, the number of predicted labels
  that each cover at least half of two or more reference vertebrae or discs (one label for two
  levels), and StrayComponents, the number of 3D connected components (26-connectivity, per
  predicted value) of predicted vertebrae and discs that overlap no reference structure at all
  (skin, bowel, the border of the field of view), and of those StrayComponentsFar, the ones lying
  more than STRAY_FAR_MM from every reference structure (in mm, each axis' own spacing): a stray
  close to the reference is often the edge of a structure the annotators drew less far, one far
  from it is off the annotated spine (junk, or levels above the annotated range).

grand-challenge-metrics (evalutils' successor) is not used: it has no symmetric ASD (its surface
distance helper is private and its public distances are Hausdorff variants or max-of-means), and
per-structure Dice is two counts; scipy's distance transform does the work instead.
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

from algorithm.io import InputError, is_volume_file, read_image, stem
from algorithm.labels import CANAL, CANAL_LABEL, DISC, DISC_OFFSET, VERTEBRA, is_disc, is_vertebra, to_classes

DETECTION_THRESHOLD = 0.1
MAX_LABEL = 65535
SURFACE_MARGIN = 1
FUSED_FRACTION = 0.5  # a predicted label covering this much of two reference structures fuses them
STRAY_FAR_MM = 5.0  # a stray component further than this from every reference structure is "far"
DICE_KEYS = (
    "DiceScoreVertebrae",
    "DiceScoreDiscs",
    "DiceScoreSpinalCanal",
    "OveralDiceScore",
    "DetectionRateVertebrae",
    "DetectionRateDiscs",
)
ASD_KEYS = ("ASDVertebrae", "ASDDiscs", "ASDSpinalCanal", "OveralASD")
CLASS_KEYS = {VERTEBRA: "ClassDiceVertebrae", DISC: "ClassDiceDiscs", CANAL: "ClassDiceSpinalCanal"}
INSTANCE_KEYS = ("FusedLabels", "StrayComponents", "StrayComponentsFar")
METRICS = DICE_KEYS + ASD_KEYS + tuple(CLASS_KEYS.values()) + INSTANCE_KEYS


@dataclass
class Overlap:
    """Voxel counts of a reference / prediction pair, indexed by label value (background not counted)."""

    ref_sizes: np.ndarray
    pred_sizes: np.ndarray
    ref_values: np.ndarray  # with pred_values and counts: voxels per (reference > 0, predicted) pair
    pred_values: np.ndarray
    counts: np.ndarray


def label_array(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as non-negative integer labels (at most MAX_LABEL); ValueError otherwise."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.rint(array)):
            raise ValueError(f"{name} has non-integer values; expected a label mask")
        array = array.astype(np.int32)
    if array.size and (array.min() < 0 or array.max() > MAX_LABEL):
        raise ValueError(f"{name} values {array.min()}..{array.max()} are outside 0..{MAX_LABEL}")
    return array if np.can_cast(array.dtype, np.intp) else array.astype(np.int32)


def overlap(ref: np.ndarray, pred: np.ndarray) -> Overlap:
    """Count voxels per label value > 0 of each array, and per value pair inside the reference."""
    inside = ref > 0
    ref_inside = ref[inside]
    keys, counts = np.unique(ref_inside.astype(np.int64) * (MAX_LABEL + 1) + pred[inside], return_counts=True)
    return Overlap(
        np.bincount(ref_inside, minlength=1),
        np.bincount(pred[pred > 0], minlength=1),
        keys // (MAX_LABEL + 1),
        keys % (MAX_LABEL + 1),
        counts,
    )


def match(counts: Overlap) -> dict[int, tuple[int, int]]:
    """Each reference value > 0 -> (predicted value overlapping it most, overlap); (0, 0) if none."""
    matches = {}
    for value in np.flatnonzero(counts.ref_sizes[1:]) + 1:
        pairs = (counts.ref_values == value) & (counts.pred_values > 0)
        if pairs.any():
            best = np.argmax(counts.counts[pairs])  # pairs are sorted: ties go to the smallest value
            matches[int(value)] = (int(counts.pred_values[pairs][best]), int(counts.counts[pairs][best]))
        else:
            matches[int(value)] = (0, 0)
    return matches


def _mean(values: list[float]) -> float:
    """np.mean with NaN for an empty list (NaN entries propagate)."""
    return float(np.mean(values)) if values else math.nan


def _categories(per_structure: dict[int, float]) -> tuple[list[float], list[float], float, list[float]]:
    """Split per-structure values into vertebrae, discs, canal and all, by reference value."""
    vertebrae = [v for value, v in per_structure.items() if 0 < value < CANAL_LABEL]
    discs = [v for value, v in per_structure.items() if value > DISC_OFFSET]
    return vertebrae, discs, per_structure.get(CANAL_LABEL, math.nan), list(per_structure.values())


def _dice_scores(dice: dict[int, float]) -> dict[str, float]:
    vertebrae, discs, canal, every = _categories(dice)
    return {
        "DiceScoreVertebrae": _mean([d for d in vertebrae if d >= DETECTION_THRESHOLD]),
        "DiceScoreDiscs": _mean([d for d in discs if d >= DETECTION_THRESHOLD]),
        "DiceScoreSpinalCanal": canal,
        "OveralDiceScore": _mean(every),
        "DetectionRateVertebrae": _mean([float(d >= DETECTION_THRESHOLD) for d in vertebrae]),
        "DetectionRateDiscs": _mean([float(d >= DETECTION_THRESHOLD) for d in discs]),
    }


def _asd_scores(asd: dict[int, float]) -> dict[str, float]:
    vertebrae, discs, canal, every = _categories(asd)
    return {"ASDVertebrae": _mean(vertebrae), "ASDDiscs": _mean(discs), "ASDSpinalCanal": canal, "OveralASD": _mean(every)}


def _class_dice(counts: Overlap) -> dict[str, float]:
    ref_class = to_classes(np.arange(counts.ref_sizes.size))  # class of each label value
    pred_class = to_classes(np.arange(counts.pred_sizes.size))
    pair_class = np.where(ref_class[counts.ref_values] == pred_class[counts.pred_values], ref_class[counts.ref_values], 0)
    scores = {}
    for cls, key in CLASS_KEYS.items():
        total = counts.ref_sizes[ref_class == cls].sum() + counts.pred_sizes[pred_class == cls].sum()
        scores[key] = float(2 * counts.counts[pair_class == cls].sum() / total) if total else math.nan
    return scores


def class_dice(ref: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Class-level Dice (vertebrae incl. 101-125, discs, canal) of two SPIDER-labelled arrays.

    NaN for a class absent from both arrays.
    """
    return _class_dice(overlap(label_array(ref, "reference"), label_array(pred, "prediction")))


def instance_errors(ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], counts: Overlap | None = None) -> dict[str, float]:
    """FusedLabels, StrayComponents and StrayComponentsFar of a prediction (see the module
    docstring); ``spacing``: mm per voxel along each array axis."""
    import cc3d
    from scipy import ndimage

    from algorithm.distance import distance_mm

    counts = counts or overlap(ref, pred)
    levels = is_vertebra(counts.ref_values) | is_disc(counts.ref_values)
    covered = levels & (counts.pred_values > 0) & (counts.counts >= FUSED_FRACTION * counts.ref_sizes[counts.ref_values])
    _, per_value = np.unique(counts.pred_values[covered], return_counts=True)
    structures = np.where(is_vertebra(pred) | is_disc(pred), pred, 0).astype(np.uint16)
    components = cc3d.connected_components(structures, connectivity=26)
    stray = np.setdiff1d(np.arange(1, int(components.max()) + 1), components[(ref > 0) & (components > 0)])
    far = 0
    if stray.size:
        nearest = ndimage.minimum(distance_mm(ref > 0, spacing), components, stray)
        far = int((np.asarray(nearest) > STRAY_FAR_MM).sum())
    return {"FusedLabels": float((per_value >= 2).sum()), "StrayComponents": float(stray.size), "StrayComponentsFar": float(far)}


def surfaces(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` that a full-neighbourhood erosion removes (the volume's edge counts as outside)."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3,) * mask.ndim, bool))


def average_surface_distance(a: np.ndarray, b: np.ndarray, sampling: tuple[float, ...]) -> float:
    """Symmetric ASD of two non-empty boolean masks: mean of the pooled surface-to-surface distances."""
    from scipy import ndimage

    surface_a, surface_b = surfaces(a), surfaces(b)
    a_to_b = ndimage.distance_transform_edt(~surface_b, sampling=sampling)[surface_a]
    b_to_a = ndimage.distance_transform_edt(~surface_a, sampling=sampling)[surface_b]
    return float(np.concatenate([a_to_b, b_to_a]).mean())


def _union_box(first: tuple[slice, ...], second: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Smallest box holding both boxes, grown by SURFACE_MARGIN voxels and clipped to ``shape``."""
    return tuple(
        slice(max(min(s.start, t.start) - SURFACE_MARGIN, 0), min(max(s.stop, t.stop) + SURFACE_MARGIN, n))
        for s, t, n in zip(first, second, shape)
    )


def _surface_distances(ref: np.ndarray, pred: np.ndarray, matches: dict[int, tuple[int, int]], sampling: tuple[float, ...]) -> dict[int, float]:
    """ASD of each reference structure to its match, on a crop around the pair; NaN if unmatched."""
    from scipy import ndimage

    ref_boxes, pred_boxes = ndimage.find_objects(ref), ndimage.find_objects(pred)
    distances = {}
    for value, (pred_value, _) in matches.items():
        if not pred_value:
            distances[value] = math.nan
            continue
        box = _union_box(ref_boxes[value - 1], pred_boxes[pred_value - 1], ref.shape)
        distances[value] = average_surface_distance(ref[box] == value, pred[box] == pred_value, sampling)
    return distances


def evaluate_case(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    official_spacing_order: bool = False,
    surface: bool = True,
) -> dict[str, float]:
    """SPIDER metrics of one case (see the module docstring); NaN where undefined.

    ``ref`` and ``pred`` are label arrays in SimpleITK (z, y, x) order and ``spacing_zyx`` their
    spacing in that same order. ``official_spacing_order`` applies the spacing reversed, like the
    official code; ``surface=False`` skips the (slower) ASD metrics, which are then absent.
    """
    ref, pred = label_array(ref, "reference"), label_array(pred, "prediction")
    if ref.shape != pred.shape:
        raise ValueError(f"reference shape {ref.shape} differs from prediction shape {pred.shape}")
    counts = overlap(ref, pred)
    matches = match(counts)
    dice = {
        value: 2 * common / (counts.ref_sizes[value] + counts.pred_sizes[pred_value]) if pred_value else 0.0
        for value, (pred_value, common) in matches.items()
    }
    sampling = tuple(float(s) for s in spacing_zyx)
    scores = _dice_scores(dice) | _class_dice(counts) | instance_errors(ref, pred, sampling, counts)
    if surface:
        scores |= _asd_scores(_surface_distances(ref, pred, matches, sampling[::-1] if official_spacing_order else sampling))
    return {key: float(scores[key]) for key in METRICS if key in scores}


def _volumes(folder: Path, role: str) -> dict[str, Path]:
    """Case name -> file for the volumes in ``folder``."""
    if not folder.is_dir():
        raise InputError(f"{role} folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if is_volume_file(p)):
        if stem(path) in files:
            raise InputError(f"{role} folder {folder} holds two files for case {stem(path)}: {files[stem(path)].name}, {path.name}")
        files[stem(path)] = path
    return files


def read_labels(path: Path):
    """(image, label array) of a mask file; InputError for anything unusable."""
    import SimpleITK as sitk

    image = read_image(path)
    try:
        return image, label_array(sitk.GetArrayFromImage(image), "mask")
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def check_grid(ref_image, pred_image, pred_path: Path) -> None:
    """InputError unless the prediction lies on the reference's voxel grid."""
    checks = (
        ("size", ref_image.GetSize(), pred_image.GetSize(), 0),
        ("spacing", ref_image.GetSpacing(), pred_image.GetSpacing(), 1e-4),
        ("origin", ref_image.GetOrigin(), pred_image.GetOrigin(), 1e-3),
        ("direction", ref_image.GetDirection(), pred_image.GetDirection(), 1e-4),
    )
    for name, ref_value, pred_value, tolerance in checks:
        if not np.allclose(ref_value, pred_value, rtol=0, atol=tolerance):
            raise InputError(f"{pred_path}: {name} {tuple(np.round(pred_value, 4))} differs from the reference's {tuple(np.round(ref_value, 4))}")


def evaluate_files(ref_path: Path, pred_path: Path | None, official_spacing_order: bool = False, surface: bool = True) -> dict[str, float]:
    """Metrics of one reference file and its prediction file (None: nothing predicted)."""
    ref_image, ref = read_labels(ref_path)
    if pred_path is None:
        pred = np.zeros_like(ref)
    else:
        pred_image, pred = read_labels(pred_path)
        check_grid(ref_image, pred_image, pred_path)
    return evaluate_case(ref, pred, ref_image.GetSpacing()[::-1], official_spacing_order, surface)


def summarise(cases: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Mean, sample std (ddof=1) and number of defined values of each metric over cases, NaN skipped."""
    mean, std, count = {}, {}, {}
    for key in METRICS:
        values = np.array([case[key] for case in cases.values() if key in case], dtype=float)
        values = values[~np.isnan(values)]
        if key in next(iter(cases.values()), {}):
            count[key] = int(values.size)
            mean[key] = float(values.mean()) if values.size else math.nan
            std[key] = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return mean, std, count


def evaluate_dirs(
    ref_dir: str | Path,
    pred_dir: str | Path,
    official_spacing_order: bool = False,
    surface: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate every reference in ``ref_dir`` against the same-named file in ``pred_dir``.

    Returns the JSON summary: mean, std, count (cases with a defined value) and cases (per-case
    metrics), plus missing_predictions (counted as all missed), ignored_predictions (no
    reference), errors (case -> one-line message; those cases are left out) and settings.
    Raises InputError for unusable folders.
    """
    from tqdm import tqdm

    refs, preds = _volumes(Path(ref_dir), "reference"), _volumes(Path(pred_dir), "prediction")
    if not refs:
        raise InputError(f"reference folder {ref_dir} holds no volume files")
    cases, errors = {}, {}
    for case, ref_path in tqdm(refs.items(), desc="evaluate", unit="case", disable=not progress):
        try:
            cases[case] = evaluate_files(ref_path, preds.get(case), official_spacing_order, surface)
        except InputError as err:
            errors[case] = str(err)
    mean, std, count = summarise(cases)
    return {
        "mean": mean,
        "std": std,
        "count": count,
        "cases": cases,
        "missing_predictions": sorted(set(refs) - set(preds)),
        "ignored_predictions": sorted(set(preds) - set(refs)),
        "errors": errors,
        "settings": {"official_spacing_order": official_spacing_order, "surface": surface},
    }


def _jsonable(value):
    """Replace NaN by None (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_json(summary: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")


def write_csv(summary: dict, path: Path) -> None:
    """One row per evaluated case; empty cells for undefined values."""
    keys = [key for key in METRICS if key in summary["mean"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "status", *keys])
        for case, scores in summary["cases"].items():
            status = "missing prediction" if case in summary["missing_predictions"] else "ok"
            writer.writerow([case, status, *("" if math.isnan(scores[k]) else f"{scores[k]:.6g}" for k in keys)])


def format_table(summary: dict) -> str:
    """The summary as a readable table."""
    lines = [f"{'metric':<24}{'mean':>10}{'std':>10}{'cases':>7}"]
    for key, mean in summary["mean"].items():
        lines.append(f"{key:<24}{mean:>10.4f}{summary['std'][key]:>10.4f}{summary['count'][key]:>7}")
    order = "official (x, y, z) order on (z, y, x) arrays" if summary["settings"]["official_spacing_order"] else "each axis' own spacing"
    lines.append(
        f"{len(summary['cases'])} case(s) evaluated, {len(summary['missing_predictions'])} without prediction "
        f"(counted as all missed), {len(summary['errors'])} failed; ASD in mm with {order}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="spider-evaluate",
        description="Score SPIDER predictions against reference masks as the SPIDER challenge does: per-structure "
        "Dice (structures matched by overlap, Dice < 0.1 = missed), detection rates, symmetric average surface "
        "distance (mm) and class-level Dice; per case, then mean and std over cases. Files are paired by name "
        "(<case>.mha or .nii.gz in both folders).",
        epilog="Spacing order: the official evaluation applies the spacing in (x, y, z) order to arrays in (z, y, x) "
        "order, so its ASD is not in mm on anisotropic volumes. By default ASD uses each axis' own spacing; "
        "--official-spacing-order reproduces the leaderboard's ASD. Dice and detection rates are unaffected.",
    )
    parser.add_argument("ref_dir", type=Path, help="folder of reference masks")
    parser.add_argument("pred_dir", type=Path, help="folder of predicted masks, same file names")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the summary (mean, std, per case) as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write per-case metrics as CSV")
    parser.add_argument("--official-spacing-order", action="store_true", help="compute ASD with the official code's reversed spacing (leaderboard numbers)")
    parser.add_argument("--no-surface", action="store_true", help="skip the ASD metrics (faster)")
    args = parser.parse_args(argv)
    try:
        summary = evaluate_dirs(args.ref_dir, args.pred_dir, args.official_spacing_order, not args.no_surface)
    except InputError as err:
        print(f"spider-evaluate: error: {err}", file=sys.stderr)
        return 1
    for case in summary["missing_predictions"]:
        print(f"spider-evaluate: {case}: no prediction in {args.pred_dir}; counted as all missed", file=sys.stderr)
    if summary["ignored_predictions"]:
        print(f"spider-evaluate: {len(summary['ignored_predictions'])} prediction(s) without reference ignored", file=sys.stderr)
    for message in summary["errors"].values():
        print(f"spider-evaluate: error: {message}", file=sys.stderr)
    if not summary["cases"]:
        print("spider-evaluate: error: no case could be evaluated", file=sys.stderr)
        return 1
    if args.json:
        write_json(summary, args.json)
    if args.csv:
        write_csv(summary, args.csv)
    print(format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
