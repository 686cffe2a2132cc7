"""Perturbed class maps of the 33 real SPIDER reference masks, and the chain check that post-processing must pass.

Each reference mask is made coarser (strided to about 1.5 mm in-plane and 3 mm between slices, cropped
to the foreground and 20 mm around it, so hundreds of cases run in seconds), renumbered bottom-up, turned into its class map, and then
perturbed the way a network's output goes wrong:

- ``tube``: a canal-labelled tube 6-10 mm in front of the bodies, along the spine;
- ``posterior``: the pedicles cut at the canal's front wall, so every arch is a piece of its own;
- ``split_body``: one vertebra cut through its middle, all the way back;
- ``sacrum``: a vertebra-labelled block below the lowest disc, leaning back as the sacrum does;
- ``disc_pieces``: one disc cut in two, front and back or left and right;
- ``blobs``: 3-8 small random blobs of any class, at least 5 mm from everything.

``chain_error(out, ref)`` says why an output's chain is not the reference's (None if it is): the
same number of vertebrae and discs, each reference structure's best-overlapping output label one
fixed offset from its bottom-up number, no two structures sharing a label.

    PYTHONPATH=$PWD python test/perturb.py [--baseline FILE_OR_GIT_REF]   # pass counts per kind
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from algorithm.labels import CANAL, CANAL_LABEL, DISC, DISC_OFFSET, VERTEBRA, is_disc, is_vertebra, numbering_convention, to_classes

KINDS = ("tube", "posterior", "split_body", "sacrum", "disc_pieces", "blobs")
TARGET_MM = (3.0, 1.5, 1.5)  # about this coarse: sagittal slices, rows, depth
MARGIN_MM = 20.0  # the masks are cropped to their foreground and this margin (cut edges stay cut)


@lru_cache(maxsize=None)
def reference(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A reference mask, canonical, strided to about TARGET_MM and numbered bottom-up; its spacing."""
    from algorithm.geometry import canonical_array
    from algorithm.io import read_image

    labels, spacing = canonical_array(read_image(path))
    step = [max(1, round(t / s)) for t, s in zip(TARGET_MM, spacing)]
    labels = labels[:: step[0], :: step[1], :: step[2]]
    spacing = tuple(float(s) * k for s, k in zip(spacing, step))
    hit = [np.flatnonzero(labels.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    margin = [int(MARGIN_MM / s) for s in spacing]  # the foreground's box and a margin: room for strays, little to spare
    labels = np.ascontiguousarray(labels[tuple(slice(max(0, h[0] - m), h[-1] + m + 1) for h, m in zip(hit, margin))])
    if numbering_convention(labels) == "top-down":  # 24 = lowest -> 1 = lowest, disc 224 -> 201
        top = int(labels[is_vertebra(labels)].max())
        flip = is_vertebra(labels) | is_disc(labels)
        labels[flip] = np.where(is_vertebra(labels[flip]), top + 1 - labels[flip], 2 * DISC_OFFSET + top + 1 - labels[flip])
    return labels, spacing


def perturb(kind: str, ref: np.ndarray, spacing, seed: int) -> np.ndarray:
    """The class map of ``ref`` with one perturbation of ``kind`` (see the module docstring)."""
    classes = to_classes(ref)
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(globals()[f"_{kind}"](classes, ref, np.asarray(spacing), rng))


def chain_error(out: np.ndarray, ref: np.ndarray) -> str | None:
    """Why the output's chain differs from the reference's (bottom-up numbered), or None."""
    errors = []
    offsets = set()
    for test, name in ((is_vertebra, "vertebrae"), (is_disc, "discs")):
        want = [int(v) for v in np.unique(ref) if test(v)]
        got = [int(v) for v in np.unique(out) if test(v)]
        if len(want) != len(got):
            errors.append(f"{len(got)} {name} for {len(want)}")
        matched = []
        for value in want:
            hit = out[(ref == value) & test(out)]
            if not hit.size:
                errors.append(f"{value} missing")
                continue
            best = int(np.bincount(hit).argmax())
            matched.append(best)
            offsets.add(best - value)
        if len(set(matched)) != len(matched):
            errors.append(f"{name} share labels")
    if len(offsets) > 1:
        errors.append(f"offsets {sorted(offsets)}")
    return "; ".join(errors) or None


def _canal_front(classes: np.ndarray) -> np.ndarray:
    """Per row, the canal's front wall (depth index; -1 where the row has no canal)."""
    canal = (classes == CANAL).any(axis=0)
    return np.where(canal.any(axis=1), canal.argmax(axis=1), -1)


def _tube(classes, ref, sp, rng):
    front_wall = _canal_front(classes)
    solid = ((classes == VERTEBRA) | (classes == DISC)).any(axis=0)
    rows = np.flatnonzero((front_wall >= 0) & solid.any(axis=1))
    if not len(rows):
        return classes
    front = np.where(solid[rows].any(axis=1), solid[rows].argmax(axis=1), 0)
    window = max(1, int(round(5 / sp[1])))
    front = np.array([front[max(0, i - window) : i + window + 1].min() for i in range(len(front))])  # clear of the lordosis
    radius, gap = rng.uniform(2.0, 3.5), rng.uniform(6.0, 10.0)
    centre_slice = np.flatnonzero((classes == CANAL).any(axis=(1, 2))).mean()
    s = np.arange(classes.shape[0])[:, None] * sp[0]
    d = np.arange(classes.shape[2])[None, :] * sp[2]
    for row, f in zip(rows, front):
        centre = f * sp[2] - gap - radius
        if centre - radius < 0:
            continue
        disc = (s - centre_slice * sp[0]) ** 2 + (d - centre) ** 2 <= radius**2
        plane = classes[:, row]
        plane[disc & (plane == 0)] = CANAL
    return classes


def _posterior(classes, ref, sp, rng):
    wall = _canal_front(classes)
    gap = int(round(rng.uniform(3.0, 6.0) / sp[2]))
    depth = np.arange(classes.shape[2])
    for row in np.flatnonzero(wall >= 0):
        cut = (depth >= wall[row] - 1) & (depth < wall[row] + gap)
        plane = classes[:, row]
        plane[(plane == VERTEBRA) & cut[None, :]] = 0
    return classes


def _split_body(classes, ref, sp, rng):
    values = [int(v) for v in np.unique(ref) if is_vertebra(v)]
    value = values[rng.integers(len(values))]
    rows = np.flatnonzero((ref == value).any(axis=(0, 2)))
    cut = rows[0] + int(round(rng.uniform(0.4, 0.6) * (len(rows) - 1)))
    gap = max(1, int(round(1.5 / sp[1])))
    band = classes[:, cut : cut + gap]
    band[ref[:, cut : cut + gap] == value] = 0
    return classes


def _sacrum(classes, ref, sp, rng):
    discs = [int(v) for v in np.unique(ref) if is_disc(v)]
    if not discs:
        return classes
    lowest = ref == min(discs)
    footprint = lowest.any(axis=1)  # (slice, depth)
    bottom = np.where(footprint, lowest.shape[1] - 1 - np.argmax(lowest[:, ::-1], axis=1), -1)
    s, d = np.nonzero(footprint)
    b = bottom[s, d]
    heights = [np.ptp(np.flatnonzero((ref == v).any(axis=(0, 2)))) * sp[1] for v in np.unique(ref) if is_vertebra(v)]
    room = (classes.shape[1] - 2 - b.max()) * sp[1]  # stop a voxel short of the edge: not cut by the field of view
    length = min(rng.uniform(0.5, 2.5) * float(np.median(heights)), room)
    lean = rng.uniform(0.2, 0.8)  # mm back per mm down
    for j in range(1, int(length / sp[1]) + 1):
        rows, depths = b + j, d + int(round(j * sp[1] * lean / sp[2]))
        ok = (rows < classes.shape[1]) & (depths < classes.shape[2])
        target = classes[s[ok], rows[ok], depths[ok]]
        classes[s[ok], rows[ok], depths[ok]] = np.where(target == 0, VERTEBRA, target)
    return classes


def _disc_pieces(classes, ref, sp, rng):
    values = [int(v) for v in np.unique(ref) if is_disc(v)]
    value = values[rng.integers(len(values))]
    own = ref == value
    axis = 2 if rng.random() < 0.5 or own.any(axis=(1, 2)).sum() < 3 else 0
    span = np.flatnonzero(own.any(axis=tuple(a for a in range(3) if a != axis)))
    cut = span[0] + int(round(rng.uniform(0.35, 0.65) * (len(span) - 1)))
    gap = 1 if axis == 0 else max(1, int(round(2.0 / sp[2])))
    index = [slice(None)] * 3
    index[axis] = slice(cut, cut + gap)
    part = classes[tuple(index)]
    part[own[tuple(index)]] = 0
    return classes


def _blobs(classes, ref, sp, rng):
    clear = [int(np.ceil(5.0 / s)) for s in sp]
    for _ in range(rng.integers(3, 9)):
        radius = rng.uniform(1.5, 4.0)
        half = [max(0, int(radius / s)) for s in sp]
        for _ in range(20):  # a place at least 5 mm from everything
            centre = [int(rng.integers(h, n - h)) if n > 2 * h else n // 2 for h, n in zip(half, classes.shape)]
            around = tuple(slice(max(0, c - h - m), c + h + m + 1) for c, h, m in zip(centre, half, clear))
            if not classes[around].any():
                grid = np.ogrid[tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half))]
                inside = sum(((g - c) * s / radius) ** 2 for g, c, s in zip(grid, centre, sp)) <= 1.0
                box = tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half))
                classes[box][inside[tuple(slice(0, n) for n in classes[box].shape)]] = rng.choice([VERTEBRA, DISC, CANAL])
                break
    return classes


def run(postprocess, folder: Path, seeds: int = 2, unperturbed: bool = True, progress: bool = False) -> dict[str, list[str]]:
    """kind -> failures ("mask seed: why") of ``postprocess(classes, spacing, config)`` over every case
    (with ``unperturbed``, each mask's own class map as kind "none" too)."""
    from tqdm import tqdm

    from algorithm.config import Config

    failures: dict[str, list[str]] = {kind: [] for kind in ("none",) * unperturbed + KINDS}
    for path in tqdm(sorted(folder.glob("*.mha")), desc="masks", disable=not progress):
        ref, spacing = reference(path)
        for kind, seed in [("none", 0)] * unperturbed + [(k, s) for k in KINDS for s in range(seeds)]:
            classes = to_classes(ref) if kind == "none" else perturb(kind, ref, spacing, 1000 * seed + zlib.crc32(path.stem.encode()) % 1000)
            try:
                why = chain_error(postprocess(classes, spacing, Config()), ref)
            except Exception as err:  # noqa: BLE001 -- a crash is a failure to count
                why = f"crash: {type(err).__name__}: {err}"
            if why:
                failures[kind].append(f"{path.stem} {seed}: {why}")
    return failures


if __name__ == "__main__":
    import argparse
    import importlib.util
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="a postprocess.py file to run instead of this tree's")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "spider-masks")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.baseline:
        spec = importlib.util.spec_from_file_location("baseline_postprocess", args.baseline)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        postprocess = module.postprocess
    else:
        from algorithm.postprocess import postprocess
    result = run(postprocess, args.data, progress=True)
    total = failed = 0
    for kind, fails in result.items():
        n = len(list(args.data.glob("*.mha"))) * (1 if kind == "none" else 2)
        total, failed = total + n, failed + len(fails)
        print(f"{kind:12s} {n - len(fails):3d} / {n} pass")
        if args.verbose:
            for line in fails:
                print("    " + line)
    print(f"{'all':12s} {total - failed:3d} / {total} pass")
