"""SPIDER-layout data: case listing, splits by patient, and a disk cache of preprocessed volumes.

Volumes go through ``algorithm.preprocess.preprocess`` — the very function inference uses.
Mask-only cases (real SPIDER masks without images, ``spider-train --masks``) carry a class and
tissue map and no image; training draws synthetic images for them (train/synth.py)."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithm.config import Config
from algorithm.geometry import canonical_array
from algorithm.io import InputError, grid_differences, read_image, stem
from algorithm.labels import to_classes
from algorithm.preprocess import model_shape, preprocess, resample_inplane
from train.synth import background_tissues, disc_rings, instance_tissues

log = logging.getLogger("train")


@dataclass(frozen=True)
class Case:
    """One image/mask pair of a SPIDER-layout folder."""

    name: str
    image: Path | None  # None: a mask-only case
    mask: Path
    subset: str  # "training" or "validation" (from overview.csv), "" when unknown

    @property
    def patient(self) -> str:
        return self.name.split("_")[0]


@dataclass
class Volume:
    """A preprocessed case: normalised image at the model's spacing and its class map."""

    name: str
    image: np.ndarray | None  # float16 (N, H, W); None for a mask-only case
    classes: np.ndarray  # uint8 (N, H, W)
    slice_spacing: float
    tissues: np.ndarray | None = None  # uint8 (N, H, W), train/synth.py's tissue ids


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


def list_masks(folder: str | Path) -> list[Case]:
    """Mask-only cases: every volume file of ``folder`` (or of its masks/ subfolder)."""
    folder = Path(folder)
    if (folder / "masks").is_dir():
        folder = folder / "masks"
    cases = [Case(stem(path), None, path, "") for path in sorted(folder.glob("*.mha"))]
    if not cases:
        raise InputError(f"{folder}: no .mha masks")
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


@functools.cache
def preprocessing_version() -> str:
    """Hash of the code that turns a case into a cached Volume (preprocessing, label mapping,
    tissue maps): a change to any of it invalidates the cache."""
    from algorithm import labels, preprocess
    from train import synth

    digest = hashlib.sha1()
    for module in (preprocess, labels, synth, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def _cache_key(case: Case, config: Config) -> str:
    stamp = {
        "image": [str(case.image), case.image.stat().st_mtime_ns] if case.image else None,
        "mask": [str(case.mask), case.mask.stat().st_mtime_ns],
        "spacing": config.spacing,
        "clip": list(config.clip_percentiles),
        "code": preprocessing_version(),
    }
    return hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def load_canonical(case: Case) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Image and SPIDER mask of a case in the canonical layout, with the canonical spacing.
    Raises InputError when unreadable or when the grids differ."""
    image, mask = read_image(case.image), read_image(case.mask)
    differences = grid_differences(image, mask)
    if differences:
        raise InputError(f"{case.mask}: mask grid differs from image {case.image}: {'; '.join(differences)}")
    volume, spacing = canonical_array(image)
    labels, _ = canonical_array(mask)
    if not labels.any():
        raise InputError(f"{case.mask}: mask has no labels")
    return volume, labels, spacing


def load_mask(case: Case) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A mask-only case's SPIDER mask in the canonical layout, with the canonical spacing."""
    labels, spacing = canonical_array(read_image(case.mask))
    if not labels.any():
        raise InputError(f"{case.mask}: mask has no labels")
    return labels, spacing


def load_volume(case: Case, config: Config, cache_dir: Path | None) -> Volume:
    """A case preprocessed for training (image, classes and tissue map at the model's spacing),
    from the cache when it is there."""
    cached = cache_dir / f"{case.name}-{_cache_key(case, config)}.npz" if cache_dir else None
    if cached is not None and cached.is_file():
        with np.load(cached) as data:
            image = data["image"] if "image" in data else None
            return Volume(case.name, image, data["classes"], float(data["slice_spacing"]), data["tissues"])
    if case.image is None:
        labels, spacing = load_mask(case)
        image = None
    else:
        volume, labels, spacing = load_canonical(case)
        image = preprocess(volume, spacing, config).astype(np.float16)
    shape = model_shape(labels.shape[1:], spacing[1:], config)
    tissues = disc_rings(resample_inplane(instance_tissues(labels), shape, order=0), config.spacing)
    if image is not None:
        tissues = background_tissues(image, tissues)
    classes = resample_inplane(to_classes(labels), shape, order=0)
    result = Volume(case.name, image, classes, spacing[0], tissues)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"classes": result.classes, "tissues": tissues, "slice_spacing": spacing[0]}
        np.savez(cached, **arrays, **({"image": image} if image is not None else {}))
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
