"""The vertebra mask split into vertebrae: body seeds on the coarse grid, grown through the mask."""

from __future__ import annotations

import cc3d
import numpy as np

from algorithm.distance import distance_mm, nearest_label

from .discs import DiscPlane
from .grid import bbox, cell_mm, coarse_factors, max3, pool, to_cell, upsample
from .params import P


def split_vertebrae(mask: np.ndarray, planes: list[DiscPlane], canal: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Vertebra mask -> uint16 instance ids (arbitrary order), one per vertebra, 0 outside; and the same ids
    on the coarse grid (cells of coarse_factors(spacing) voxels; every id of the first is in its cells)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.uint16), np.zeros([-(-n // f) for n, f in zip(mask.shape, coarse_factors(spacing))], dtype=np.uint16)
    factors = coarse_factors(spacing)
    coarse_mm = np.asarray(spacing) * factors
    occupancy = pool(mask, factors)
    core = distance_mm(occupancy < 0.5, coarse_mm) >= P.core_mm
    for plane in planes:
        _cut(core, plane, factors, spacing)
    front = _canal_front(canal, spacing)
    if front is not None:  # bodies lie in front of the canal; cores behind it are posterior elements
        rows = cell_mm(np.arange(core.shape[1]), factors[1], spacing[1])
        depth = cell_mm(np.arange(core.shape[2]), factors[2], spacing[2])
        core &= depth[None, None, :] < np.interp(rows, *front)[None, :, None]
    seeds = _body_seeds(core)
    for plane in planes:
        _seed_beside(seeds, occupancy >= 0.5, plane, factors, spacing)
    present = occupancy > 0
    labels = _grow(seeds, present, coarse_mm)
    labels = _attach_pieces(labels, seeds, present, front, factors, spacing)
    labels = labels.astype(np.uint16)
    return upsample(labels, factors, mask.shape) * mask, labels


def _cut(core: np.ndarray, plane: DiscPlane, factors: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    """Clear the coarse cells of core within the band along a disc plane (in place)."""
    box = _plane_box(plane, core.shape, factors, spacing)
    index = np.argwhere(core[box]) + [b.start for b in box]
    if len(index):
        hit = index[plane.band(cell_mm(index, factors, spacing), P.cut_mm, P.footprint_mm)]
        core[tuple(hit.T)] = False


def _seed_beside(seeds: np.ndarray, solid: np.ndarray, plane: DiscPlane, factors: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    """Every disc has a vertebra on both sides: where a side holds vertebra but no seed, seed it (in place).

    This finds vertebrae too thin for a core, such as the one cut by the edge of the field of view.
    """
    box = _plane_box(plane, solid.shape, factors, spacing)
    index = np.argwhere(solid[box]) + [b.start for b in box]
    if not len(index):
        return
    points = cell_mm(index, factors, spacing)
    inside = plane.band(points, P.cut_mm + P.side_mm, 0.0) & ~plane.band(points, P.cut_mm, 0.0)
    side = (points - plane.centre) @ plane.normal > 0
    cell_mm3 = float(np.prod(np.asarray(spacing) * factors))
    for sel in (inside & side, inside & ~side):
        cells = index[sel]
        if len(cells) * cell_mm3 >= P.side_min_mm3 and not seeds[tuple(cells.T)].any():
            seeds[tuple(cells.T)] = seeds.max() + 1


def _plane_box(plane: DiscPlane, shape: tuple[int, ...], factors: tuple[int, ...], spacing: tuple[float, ...]) -> tuple[slice, ...]:
    """Coarse-grid box around a disc that its bands can reach."""
    reach = plane.radius + P.footprint_mm + P.cut_mm + P.side_mm
    lo = to_cell(plane.centre - reach, factors, spacing, shape)
    hi = to_cell(plane.centre + reach, factors, spacing, shape) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _body_seeds(core: np.ndarray) -> np.ndarray:
    """Components of the core large enough to be vertebral bodies, numbered 1..n."""
    seeds = cc3d.connected_components(core, connectivity=26)
    stats = cc3d.statistics(seeds)
    sizes = np.asarray(stats["voxel_counts"])[1:]
    if not len(sizes):
        return seeds
    ids = np.flatnonzero(sizes >= P.seed_fraction * sizes.max()) + 1
    keep = np.zeros(len(sizes) + 1, dtype=np.int32)
    keep[ids] = np.arange(1, len(ids) + 1)
    return keep[seeds]


def _canal_front(canal: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, anterior wall) of the canal in mm along the superior-inferior axis, or None."""
    profile = canal.any(axis=0)
    rows = np.flatnonzero(profile.any(axis=1))
    if not len(rows):
        return None
    return rows * spacing[1], profile[rows].argmax(axis=1) * spacing[2]


def _grow(seeds: np.ndarray, present: np.ndarray, coarse_mm: np.ndarray) -> np.ndarray:
    """Spread seed labels through present cells in order of geodesic distance in mm (approximately).

    One cell step per iteration along the finest axis; coarser axes step only once the distance
    travelled has reached their spacing, so thick slices do not spread labels sideways too fast.
    Where fronts meet, the higher label wins the contested cell.
    """
    labels = seeds.astype(np.uint8 if seeds.max() < 256 else np.uint16)
    todo = present & (labels == 0)
    step, travelled, moves = float(coarse_mm.min()), 0.0, np.zeros(3)
    while (box := bbox(todo)) is not None:
        travelled += step
        allowed = np.floor(travelled / coarse_mm + 1e-6) > moves
        moves += allowed
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)  # only around what is left to do
        grown = max3(labels[box], [axis for axis in range(3) if allowed[axis]])
        new = todo[box] & (grown > 0)
        if not new.any() and allowed.all():
            break
        labels[box][new] = grown[new]
        todo[box] &= ~new
    return labels


def _behind_canal(points: np.ndarray, front) -> np.ndarray:
    """True for points (N, 3) in mm behind the canal's front wall at their height (all False without a canal)."""
    if front is None:
        return np.zeros(len(points), dtype=bool)
    return points[:, 2] >= np.interp(points[:, 1], *front)


def _attach_pieces(labels: np.ndarray, seeds: np.ndarray, present: np.ndarray, front, factors: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """Keep the watershed labels of seeded pieces of the vertebra mask; label the seedless pieces.

    A piece within P.attach_mm of a vertebra or behind the canal's front wall (posterior elements
    cut off within the slab) is split cell by cell among the nearest vertebrae (a lateral slice
    can hold the facet column of several levels in one piece); any other piece (a vertebra too
    small for a seed, e.g. at the edge of the field of view) becomes a vertebra of its own.
    """
    coarse_mm = np.asarray(spacing) * factors
    pieces = cc3d.connected_components(present, connectivity=26)
    seeded = np.zeros(int(pieces.max()) + 1, dtype=bool)
    seeded[np.unique(pieces[seeds > 0])] = True
    seeded[0] = False
    labels = np.where(seeded[pieces], labels, 0).astype(np.uint16)
    orphans = present & ~seeded[pieces]
    if not orphans.any():
        return labels
    dist = distance_mm(labels > 0, coarse_mm)
    seeded = int(labels.max())
    attach, next_id = np.zeros(labels.shape, dtype=bool), seeded + 1
    for piece in np.unique(pieces[orphans]):
        own = pieces == piece
        centre = cell_mm(np.argwhere(own).mean(axis=0, keepdims=True), factors, spacing)
        if dist[own].min() <= P.attach_mm or (_behind_canal(centre, front)[0] and dist[own].min() <= P.posterior_mm):
            attach |= own
        else:
            labels[own] = next_id
            next_id += 1
    if attach.any():  # cell by cell to the nearest seeded vertebra (not one of the new ones)
        labels[attach] = nearest_label(np.where(labels <= seeded, labels, 0), coarse_mm, np.argwhere(attach), dist[attach])
    return labels

