"""SPIDER-layout data: case listing, splits by patient, and a disk cache of preprocessed volumes.

Volumes go through ``algorithm.preprocess.preprocess`` — the very function inference uses."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithm.config import Config
from algorithm.geometry import orientation
from algorithm.io import InputError, grid_differences, read_image, stem
from algorithm.labels import to_classes
from algorithm.preprocess import model_shape, preprocess, resample_inplane

log = logging.getLogger("train")


@dataclass(frozen=True)
class Case:
    """One image/mask pair of a SPIDER-layout folder."""

    name: str
    image: Path
    mask: Path
    subset: str  # "training" or "validation" (from overview.csv), "" when unknown

    @property
    def patient(self) -> str:
        return self.name.split("_")[0]


@dataclass
class Volume:
    """A preprocessed case: normalised image at the model's spacing and its class map."""

    name: str
    image: np.ndarray  # float16 (N, H, W)
    classes: np.ndarray  # uint8 (N, H, W)
    slice_spacing: float


def list_cases(data_dir: str | Path) -> list[Case]:
    """Image/mask pairs under ``data_dir/images`` and ``data_dir/masks``, with subsets from overview.csv."""
    data_dir = Path(data_dir)
    subsets: dict[str, str] = {}
    overview = data_dir / "overview.csv"
    if overview.is_file():
        with overview.open(newline="") as f:
            subsets = {row["new_file_name"]: row.get("subset", "") for row in csv.DictReader(f)}
    cases = []
    for image in sorted((data_dir / "images").glob("*.mha")):
        mask = data_dir / "masks" / image.name
        if not mask.is_file():
            log.warning("skipping %s: no mask %s", image, mask)
            continue
        cases.append(Case(stem(image), image, mask, subsets.get(stem(image), "")))
    if not cases:
        raise InputError(f"{data_dir}: no image/mask pairs in images/ and masks/")
    return cases


def split(cases: list[Case], fold: int | None = None, folds: int = 5) -> tuple[list[Case], list[Case]]:
    """(train, validation): the official ``subset`` split, or fold ``fold`` of ``folds`` by patient
    (one patient's series never straddle folds)."""
    if fold is None:
        return [c for c in cases if c.subset != "validation"], [c for c in cases if c.subset == "validation"]
    patients = sorted({c.patient for c in cases})
    rng = np.random.default_rng(12345)
    order = rng.permutation(len(patients))
    held = {patients[i] for i in order[fold::folds]}
    return [c for c in cases if c.patient not in held], [c for c in cases if c.patient in held]


def _cache_key(case: Case, config: Config) -> str:
    stamp = {
        "image": [str(case.image), case.image.stat().st_mtime_ns],
        "mask": [str(case.mask), case.mask.stat().st_mtime_ns],
        "spacing": config.spacing,
        "clip": list(config.clip_percentiles),
    }
    return hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def load_canonical(case: Case) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Image and SPIDER mask of a case in the canonical layout, with the canonical spacing.
    Raises InputError when unreadable or when the grids differ."""
    import SimpleITK as sitk

    image, mask = read_image(case.image), read_image(case.mask)
    differences = grid_differences(image, mask)
    if differences:
        raise InputError(f"{case.mask}: mask grid differs from image {case.image}: {'; '.join(differences)}")
    orient = orientation(image.GetDirection(), image.GetSpacing())
    volume = orient.to_canonical(sitk.GetArrayViewFromImage(image))
    labels = orient.to_canonical(sitk.GetArrayViewFromImage(mask))
    if not labels.any():
        raise InputError(f"{case.mask}: mask has no labels")
    return np.ascontiguousarray(volume), np.ascontiguousarray(labels), orient.spacing


def load_volume(case: Case, config: Config, cache_dir: Path | None) -> Volume:
    """A case preprocessed for training, from the cache when it is there."""
    cached = cache_dir / f"{case.name}-{_cache_key(case, config)}.npz" if cache_dir else None
    if cached is not None and cached.is_file():
        with np.load(cached) as data:
            return Volume(case.name, data["image"], data["classes"], float(data["slice_spacing"]))
    volume, labels, spacing = load_canonical(case)
    image = preprocess(volume, spacing, config).astype(np.float16)
    classes = resample_inplane(to_classes(labels), model_shape(labels.shape[1:], spacing[1:], config), order=0)
    result = Volume(case.name, image, classes, spacing[0])
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, image=image, classes=classes, slice_spacing=spacing[0])
    return result


def load_volumes(cases: list[Case], config: Config, cache_dir: Path | None) -> list[Volume]:
    """Preprocess every readable case; name and skip the others."""
    from tqdm import tqdm

    volumes = []
    for case in tqdm(cases, desc="preprocess", unit="case"):
        try:
            volumes.append(load_volume(case, config, cache_dir))
        except InputError as err:
            log.warning("skipping: %s", err)
    return volumes
