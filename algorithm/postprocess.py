"""Post-processing: the network's class map -> a SPIDER instance mask.

Steps (all on the bounding box of the foreground, scipy + cc3d only):
1. per class, 3D components smaller than `config.min_component_mm3` are removed;
2. discs are 3D components; a small piece lying in the plane of a larger disc joins it;
3. vertebrae are split on a ~1.5 mm grid: seeds are the vertebral body cores (voxels at
   least CORE_MM from any non-vertebra voxel, with a band along every disc plane cut out, so
   bodies bridged through a thin or partly missing disc fall apart); core behind the canal's
   front wall (posterior elements) and seeds much smaller than the largest are dropped; a
   vertebra slab beside a disc that holds no seed is seeded too (vertebrae too thin for a
   core, e.g. cut by the field of view); each seed then grows through the vertebra mask in
   order of geodesic distance, so posterior elements go to the body they hang on by the shortest path (a
   distance-map watershed instead hands the whole facet column to one body);
4. vertebra pieces without a body (pedicles and facets cut off in lateral slices, arches cut
   off in a midline slab) join the nearest vertebrae, cell by cell, when within ATTACH_MM or
   behind the canal's front wall; other seedless pieces become vertebrae of their own;
5. canal components of at least CANAL_FRACTION of the largest one become label 100;
6. numbering bottom-up: vertebra 1 is the lowest, disc 200+k lies directly below vertebra k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage as ndi

from algorithm.config import Config
from algorithm.labels import CANAL, CANAL_LABEL, DISC, DISC_OFFSET, MAX_INDEX, VERTEBRA

PERCELL = False
COARSE_MM = 1.5  # grid spacing of the seed / watershed work
CORE_MM = 3.0  # body seeds: at least this far from any non-vertebra voxel
CUT_MM = 3.0  # half-thickness of the band cut out of the seeds along each disc plane
FOOTPRINT_MM = 10.0  # the band reaches this far beyond a disc's rim (cores only, so generous)
SIDE_MM = 5.0  # depth of the slab beside each disc searched for an unseeded vertebra
SIDE_MIN_MM3 = 500.0  # an unseeded slab this large becomes a seed
SEED_FRACTION = 0.05  # seeds below this fraction of the largest seed are not bodies
ATTACH_MM = 8.0  # seedless vertebra pieces this close to a vertebra become part of it
CANAL_FRACTION = 0.1  # canal pieces below this fraction of the largest piece are dropped


@dataclass(frozen=True)
class DiscPlane:
    """A disc as a flat round plate in mm (crop voxel index x spacing).

    The plate is as wide in every direction as the disc is at its widest, so a disc that is
    partly missing (predicted as bone) still separates the bodies along its whole plane.
    """

    centre: np.ndarray
    normal: np.ndarray
    radius: float

    def band(self, points: np.ndarray, half_thickness: float, margin: float) -> np.ndarray:
        """True for points (N, 3) in mm within half_thickness of the plane and inside the rim + margin."""
        rel = points - self.centre
        height = rel @ self.normal
        inplane = (rel**2).sum(axis=1) - height**2
        return (np.abs(height) <= half_thickness) & (inplane <= (self.radius + margin) ** 2)


def postprocess(classes: np.ndarray, spacing: tuple[float, float, float], config: Config) -> np.ndarray:
    """Canonical uint8 class map (0 bg, 1 vertebra, 2 disc, 3 canal) -> int16 SPIDER instance mask."""
    classes = np.asarray(classes)
    out = np.zeros(classes.shape, dtype=np.int16)
    box = _bbox(classes > 0)
    if box is None:
        return out
    sub = np.ascontiguousarray(classes[box])
    spacing = tuple(float(s) for s in spacing)
    min_voxels = max(1, math.ceil(config.min_component_mm3 / math.prod(spacing)))
    verts, discs, canal = _clean(sub, min_voxels)
    discs, planes = _merge_disc_pieces(discs, spacing)
    verts = split_vertebrae(verts, planes, canal, spacing)
    out[box] = number_structures(verts, discs)
    out[box][canal] = CANAL_LABEL
    return out


def split_vertebrae(mask: np.ndarray, planes: list[DiscPlane], canal: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Vertebra mask -> uint16 instance ids (arbitrary order), one per vertebra, 0 outside."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.uint16)
    factors = tuple(max(1, round(COARSE_MM / s)) for s in spacing)
    coarse_mm = np.asarray(spacing) * factors
    occupancy = _pool(mask, factors)
    dist = ndi.distance_transform_edt(occupancy >= 0.5, sampling=coarse_mm)
    core = dist >= CORE_MM
    for plane in planes:
        _cut(core, plane, factors, spacing)
    front = _canal_front(canal, spacing)
    if front is not None:  # bodies lie in front of the canal; cores behind it are posterior elements
        rows = _cell_mm(np.arange(core.shape[1]), factors[1], spacing[1])
        depth = _cell_mm(np.arange(core.shape[2]), factors[2], spacing[2])
        core &= depth[None, None, :] < np.interp(rows, *front)[None, :, None]
    seeds = _body_seeds(core)
    for plane in planes:
        _seed_beside(seeds, occupancy >= 0.5, plane, factors, spacing)
    present = occupancy > 0
    labels = _grow(seeds, present, coarse_mm)
    labels = _attach_pieces(labels, seeds, present, front, factors, spacing)
    return _upsample(labels.astype(np.uint16), factors, mask.shape) * mask


def number_structures(verts: np.ndarray, discs: np.ndarray) -> np.ndarray:
    """Instance ids of vertebrae and discs (disjoint) -> int16 SPIDER labels, numbered bottom-up.

    Vertebrae are ordered by their superior-inferior centroid (canonical axis 1): 1 = lowest.
    A disc takes 200 + k of the nearest vertebra k above it (the highest such disc wins); discs
    above every vertebra continue the count upwards; any other disc takes the next free number.
    Beyond 25 vertebrae or discs the smallest are dropped.
    """
    v_rows, v_sizes = _rows_and_sizes(verts)
    d_rows, d_sizes = _rows_and_sizes(discs)
    v_ids = _keep_largest(np.flatnonzero(v_sizes), v_sizes)
    v_ids = v_ids[np.argsort(-v_rows[v_ids], kind="stable")]  # bottom-up
    v_lut = np.zeros(len(v_sizes), dtype=np.int16)
    v_lut[v_ids] = np.arange(1, len(v_ids) + 1)
    d_ids = np.flatnonzero(d_sizes)
    d_ids = d_ids[np.argsort(-d_rows[d_ids], kind="stable")]  # bottom-up
    below = [np.flatnonzero(v_rows[v_ids] < d_rows[d]) for d in d_ids]
    wanted = [int(b[0]) + 1 for b in below if len(b)]
    wanted += list(range(len(v_ids) + 1, len(v_ids) + 1 + len(d_ids) - len(wanted)))
    claims: dict[int, int] = {}
    for d, k in reversed(list(zip(d_ids, wanted))):  # top-down: the disc nearest below a vertebra claims it
        if k <= MAX_INDEX and k not in claims:
            claims[k] = int(d)
    pending = [int(d) for d in d_ids if int(d) not in claims.values()]
    free = [k for k in range(max(claims, default=0) + 1, MAX_INDEX + 1)]
    free += [k for k in range(1, MAX_INDEX + 1) if k not in claims and k not in free]
    claims.update(zip(free, pending))
    d_lut = np.zeros(len(d_sizes), dtype=np.int16)
    for k, d in claims.items():
        d_lut[d] = DISC_OFFSET + k
    return v_lut[verts] + d_lut[discs]


def _rows_and_sizes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-1 centroid and voxel count per id (index = id)."""
    stats = cc3d.statistics(np.ascontiguousarray(ids))
    sizes = np.asarray(stats["voxel_counts"]).astype(np.int64)
    sizes[0] = 0
    rows = np.nan_to_num(np.asarray(stats["centroids"], dtype=float).reshape(-1, 3)[:, 1])
    return rows, sizes


def _keep_largest(ids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """At most MAX_INDEX ids, the largest ones."""
    return np.sort(ids[np.argsort(-sizes[ids], kind="stable")][:MAX_INDEX])


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box holding every True voxel, or None."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not len(hit):
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _clean(classes: np.ndarray, min_voxels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class map -> (vertebra mask, disc component ids 1..n, canal mask) without small components.

    One multi-label connected-components pass (a component never mixes classes); canal pieces
    below CANAL_FRACTION of the largest canal piece are dropped as well.
    """
    ids = cc3d.connected_components(classes, connectivity=26)
    sizes = np.bincount(ids.ravel())
    kind = np.zeros(len(sizes), dtype=np.uint8)
    foreground = classes > 0
    kind[ids[foreground]] = classes[foreground]
    kept = sizes >= min_voxels
    canal = kept & (kind == CANAL)
    canal &= sizes >= CANAL_FRACTION * sizes[canal].max(initial=0)
    disc = kept & (kind == DISC)
    disc_lut = np.zeros(len(sizes), dtype=np.uint32)
    disc_lut[disc] = np.arange(1, disc.sum() + 1)
    return (kept & (kind == VERTEBRA))[ids], disc_lut[ids], canal[ids]


def _disc_plane(points: np.ndarray) -> DiscPlane:
    """Fit a plate to disc voxel positions (N, 3) in mm."""
    centre = points.mean(axis=0)
    rel = points - centre
    _, vectors = np.linalg.eigh(rel.T @ rel)  # ascending: the thinnest direction is the normal
    normal = vectors[:, 0]
    return DiscPlane(centre, normal, float(np.sqrt(((rel**2).sum(axis=1) - (rel @ normal) ** 2).max())))


def _merge_disc_pieces(discs: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, list[DiscPlane]]:
    """Join each disc piece whose centre lies in the band of a larger disc to it; fit the planes."""
    stats = cc3d.statistics(discs)
    order = np.argsort(-np.asarray(stats["voxel_counts"])[1:], kind="stable") + 1
    target = np.arange(len(stats["voxel_counts"]))
    planes: dict[int, DiscPlane] = {}
    for d in order:
        box = stats["bounding_boxes"][d]
        points = (np.argwhere(discs[box] == d) + [s.start for s in box]) * spacing
        centre = points.mean(axis=0, keepdims=True)
        host = next((h for h, p in planes.items() if p.band(centre, CUT_MM, FOOTPRINT_MM)[0]), None)
        if host is None:
            planes[int(d)] = _disc_plane(points[:: max(1, len(points) // 20000)])
        else:
            target[d] = host
    return target.astype(np.uint32)[discs], list(planes.values())


def _pool(mask: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Fraction of each factors-sized block that is True (the grid padded with False)."""
    padded = np.pad(mask, [(0, -n % f) for n, f in zip(mask.shape, factors)])
    shape = [v for n, f in zip(padded.shape, factors) for v in (n // f, f)]
    return padded.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def _upsample(coarse: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Repeat each coarse cell factors times and crop to shape."""
    for axis, f in enumerate(factors):
        coarse = np.repeat(coarse, f, axis=axis)
    return coarse[tuple(slice(0, n) for n in shape)]


def _cell_mm(index: np.ndarray, factors, spacing) -> np.ndarray:
    """Coarse cell indices (..., 3), or along one axis with scalar factors and spacing -> centres in mm."""
    f = np.asarray(factors)
    return (index * f + (f - 1) / 2) * np.asarray(spacing)


def _cut(core: np.ndarray, plane: DiscPlane, factors: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    """Clear the coarse cells of core within the band along a disc plane (in place)."""
    index = np.argwhere(core[_plane_box(plane, core.shape, factors, spacing)]) + _plane_box_start(plane, core.shape, factors, spacing)
    if len(index):
        hit = index[plane.band(_cell_mm(index, factors, spacing), CUT_MM, FOOTPRINT_MM)]
        core[tuple(hit.T)] = False


def _seed_beside(seeds: np.ndarray, solid: np.ndarray, plane: DiscPlane, factors: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    """Every disc has a vertebra on both sides: where a side holds vertebra but no seed, seed it (in place).

    This finds vertebrae too thin for a core, such as the one cut by the edge of the field of view.
    """
    index = np.argwhere(solid[_plane_box(plane, solid.shape, factors, spacing)]) + _plane_box_start(plane, solid.shape, factors, spacing)
    if not len(index):
        return
    points = _cell_mm(index, factors, spacing)
    inside = plane.band(points, CUT_MM + SIDE_MM, 0.0) & ~plane.band(points, CUT_MM, 0.0)
    side = (points - plane.centre) @ plane.normal > 0
    cell_mm3 = float(np.prod(np.asarray(spacing) * factors))
    for sel in (inside & side, inside & ~side):
        cells = index[sel]
        if len(cells) * cell_mm3 >= SIDE_MIN_MM3 and not seeds[tuple(cells.T)].any():
            seeds[tuple(cells.T)] = seeds.max() + 1


def _plane_box_start(plane: DiscPlane, shape: tuple[int, ...], factors: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """First coarse cell of the box around a disc that its bands can reach."""
    reach = plane.radius + FOOTPRINT_MM + CUT_MM + SIDE_MM
    return _to_cell(plane.centre - reach, factors, spacing, shape)


def _plane_box(plane: DiscPlane, shape: tuple[int, ...], factors: tuple[int, ...], spacing: tuple[float, ...]) -> tuple[slice, ...]:
    """Coarse-grid box around a disc that its bands can reach."""
    reach = plane.radius + FOOTPRINT_MM + CUT_MM + SIDE_MM
    hi = _to_cell(plane.centre + reach, factors, spacing, shape) + 1
    return tuple(slice(a, b) for a, b in zip(_plane_box_start(plane, shape, factors, spacing), hi))


def _to_cell(mm: np.ndarray, factors: tuple[int, ...], spacing: tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Position in mm -> coarse cell index clipped to the grid."""
    cell = np.floor(mm / np.asarray(spacing) / np.asarray(factors)).astype(int)
    return np.clip(cell, 0, np.asarray(shape) - 1)


def _body_seeds(core: np.ndarray) -> np.ndarray:
    """Components of the core large enough to be vertebral bodies, numbered 1..n."""
    seeds = cc3d.connected_components(core, connectivity=26)
    stats = cc3d.statistics(seeds)
    sizes = np.asarray(stats["voxel_counts"])[1:]
    if not len(sizes):
        return seeds
    ids = np.flatnonzero(sizes >= SEED_FRACTION * sizes.max()) + 1
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
    while todo.any():
        travelled += step
        allowed = np.floor(travelled / coarse_mm + 1e-6) > moves
        moves += allowed
        grown = ndi.maximum_filter(labels, size=tuple(3 if a else 1 for a in allowed))
        new = todo & (grown > 0)
        if not new.any() and allowed.all():
            break
        labels[new] = grown[new]
        todo &= ~new
    return labels


def _behind_canal(points: np.ndarray, front) -> np.ndarray:
    """True for points (N, 3) in mm behind the canal's front wall at their height (all False without a canal)."""
    if front is None:
        return np.zeros(len(points), dtype=bool)
    return points[:, 2] >= np.interp(points[:, 1], *front)


def _attach_pieces(labels: np.ndarray, seeds: np.ndarray, present: np.ndarray, front, factors: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """Keep the watershed labels of seeded pieces of the vertebra mask; label the seedless pieces.

    A piece within ATTACH_MM of a vertebra or behind the canal's front wall (posterior elements
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
    if labels.any():
        dist, index = ndi.distance_transform_edt(labels == 0, sampling=coarse_mm, return_indices=True)
        nearest = labels[tuple(index)]
    else:
        dist, nearest = np.full(labels.shape, np.inf), labels
    next_id = int(labels.max()) + 1
    for piece in np.unique(pieces[orphans]):
        own = pieces == piece
        centre = _cell_mm(np.argwhere(own).mean(axis=0, keepdims=True), factors, spacing)
        if dist[own].min() <= ATTACH_MM or _behind_canal(centre, front)[0]:
            labels[own] = nearest[own]
        else:
            labels[own] = next_id
            next_id += 1
    return labels
