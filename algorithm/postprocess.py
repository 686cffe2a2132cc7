"""Post-processing: the network's class map -> a SPIDER instance mask.

Steps (all on the bounding box of the foreground; cc3d, and distance maps from algorithm.distance):
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
   off in a midline slab) join the nearest vertebrae, cell by cell, when within ATTACH_MM, or
   behind the canal's front wall and within POSTERIOR_MM; other seedless pieces become
   vertebrae of their own;
5. the spine column (`fit_column`, all decisions in mm): discs and vertebrae within CONTACT_MM
   of each other are linked, and so are vertebrae touching the main canal; the chain is the
   linked group with the most links, its discs the longest path of discs stacked along one
   spine; from them (or from the canal) comes a band along the spine. Bodies in the band stay,
   pieces touching the chain join it, pieces where posterior elements can be join the chain
   body at their height, the rest (skin, bowel, the border of the field of view) is dropped;
   chain vertebrae lose what hangs far in front of the band; disc pieces of one level merge,
   pieces of one body merge, and a body much taller than the median is cut at its narrowest
   level. A chain with fewer than MIN_LINKS links judges nothing;
6. canal components of at least CANAL_FRACTION of the largest one become label 100; pieces of
   a structure below the minimum volume left by the splitting are removed;
7. numbering bottom-up: vertebra 1 is the lowest, disc 200+k lies directly below vertebra k;
   with `config.partial_vertebrae`, a vertebra cut by the superior or inferior edge of the field
   of view becomes 100+k (SPIDER's scheme; off by default, as every released mask seen here
   labels such vertebrae 1-25).

`postprocess(..., log=[])` appends one record per action (dropped, trimmed, reassigned, merged,
split, partial) to the list, for the QC JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cc3d
import numpy as np
from algorithm.config import Config
from algorithm.distance import distance_mm, nearest_label
from algorithm.labels import CANAL, CANAL_LABEL, DISC, DISC_OFFSET, MAX_INDEX, PARTIAL_OFFSET, VERTEBRA

COARSE_MM = 1.5  # grid spacing of the seed / watershed work
CORE_MM = 3.0  # body seeds: at least this far from any non-vertebra voxel
CUT_MM = 3.0  # half-thickness of the band cut out of the seeds along each disc plane
FOOTPRINT_MM = 10.0  # the band reaches this far beyond a disc's rim (cores only, so generous)
SIDE_MM = 5.0  # depth of the slab beside each disc searched for an unseeded vertebra
SIDE_MIN_MM3 = 500.0  # an unseeded slab this large becomes a seed
SEED_FRACTION = 0.05  # seeds below this fraction of the largest seed are not bodies
ATTACH_MM = 8.0  # seedless vertebra pieces this close to a vertebra become part of it
CANAL_FRACTION = 0.1  # canal pieces below this fraction of the largest piece are dropped
CONTACT_MM = 5.0  # a vertebra this close to a disc touches it (one link of the chain)
FRONT_MM = 5.0  # kept vertebra pieces lie at most this far in front of the discs' front line ...
POSTERIOR_MM = 65.0  # ... and at most this far behind their back line (spinous process tips)
LATERAL_MM = 50.0  # ... and this far to either side of the chain's midline (transverse processes)
LEVEL_MM = 30.0  # ... and this far above or below the chain's ends (one more vertebra)
CONE = 0.5  # beyond the chain's end discs, the band widens by this many mm per mm (up to LINE_MM)
CANAL_MM = 15.0  # the chain's discs lie this close to the canal (where there is one)
DISC_DEPTH_MM = 12.0  # a disc of the chain is at least this deep (anterior-posterior); skin strips are thinner
JOIN_MM = 10.0  # a group joins the chain if its discs lie within this margin of the chain's band
SAME_LEVEL_MM = 8.0  # two disc pieces touching the same bodies merge when their centres are this close in height
LINE_MM = 30.0  # consecutive discs of the chain lie this close anterior-posterior ...
STEP_MM, MAX_STEP_MM = 12.0, 80.0  # ... and this far apart in height (a missed disc between them allowed)
TRIM_MM = 10.0  # chain vertebrae lose what lies further than this in front of the discs' front line
CANAL_LENGTH_MM = 40.0  # a canal component shorter than this (along the spine) does not guide the chain
BODY_DEPTH_MM = 40.0  # without discs, bodies are taken to lie this far in front of the canal's front wall
MIN_LINKS = 2  # a chain with fewer links (body-disc-body, or a vertebra on the canal) is too short to judge the rest by
SPLIT_RATIO = 1.6  # a body this many times taller than the median body is cut
MERGE_RATIO = 1.3  # two adjacent bodies without a disc between them, together at most this tall ...
SHORT_RATIO = 0.5  # ... and one of them at most this tall (times the median body), are one
SAME_BODY_RATIO = 1.5  # two vertebrae touching a disc from the same side merge if together at most this tall


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


def postprocess(classes: np.ndarray, spacing: tuple[float, float, float], config: Config, log: list[dict] | None = None) -> np.ndarray:
    """Canonical uint8 class map (0 bg, 1 vertebra, 2 disc, 3 canal) -> int16 SPIDER instance mask.

    With ``log``, one record per post-processing action is appended to it (see fit_column);
    positions are mm from the first voxel of the canonical array.
    """
    classes = np.asarray(classes)
    out = np.zeros(classes.shape, dtype=np.int16)
    box = _bbox(classes > 0)
    if box is None:
        return out
    sub = np.ascontiguousarray(classes[box])
    spacing = tuple(float(s) for s in spacing)
    min_voxels = max(1, math.ceil(config.min_component_mm3 / math.prod(spacing)))
    verts, discs, canal = _clean(sub, min_voxels)
    disc_lut, planes, disc_stats = _merge_disc_pieces(discs, spacing)  # disc ids stay raw components; their LUT is applied once
    verts, coarse = split_vertebrae(verts, planes, canal, spacing)
    records: list[dict] = []
    verts, disc_lut = fit_column(verts, coarse, discs, disc_lut, canal, spacing, records)
    labels = number_structures(verts, discs, disc_lut, disc_stats)
    _drop_fragments(labels, min_voxels, records)
    if config.partial_vertebrae:
        _mark_partial(labels, box, classes.shape[1], records)
    out[box] = labels
    out[box][canal] = CANAL_LABEL
    if log is not None:
        offset = np.array([s.start for s in box]) * spacing
        log.extend(_final_record(r, labels, verts, discs, disc_lut, offset) for r in records)
    return out


def split_vertebrae(mask: np.ndarray, planes: list[DiscPlane], canal: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Vertebra mask -> uint16 instance ids (arbitrary order), one per vertebra, 0 outside; and the same ids
    on the coarse grid (cells of coarse_factors(spacing) voxels; every id of the first is in its cells)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.uint16), np.zeros([-(-n // f) for n, f in zip(mask.shape, coarse_factors(spacing))], dtype=np.uint16)
    factors = coarse_factors(spacing)
    coarse_mm = np.asarray(spacing) * factors
    occupancy = _pool(mask, factors)
    core = distance_mm(occupancy < 0.5, coarse_mm) >= CORE_MM
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
    labels = labels.astype(np.uint16)
    return _upsample(labels, factors, mask.shape) * mask, labels


def coarse_factors(spacing: tuple[float, ...]) -> tuple[int, ...]:
    """Voxels per coarse cell along each axis: cells of about COARSE_MM."""
    return tuple(max(1, round(COARSE_MM / s)) for s in spacing)


def number_structures(verts: np.ndarray, discs: np.ndarray, disc_lut: np.ndarray | None = None, disc_stats: tuple | None = None) -> np.ndarray:
    """Instance ids of vertebrae and discs (disjoint) -> int16 SPIDER labels, numbered bottom-up.

    ``disc_lut`` maps the ids of ``discs`` to disc ids (pieces of one disc share one; 0 drops);
    ``disc_stats``, the (axis-1 centroid, voxel count) of each id of ``discs`` if already known.

    Vertebrae are ordered by their superior-inferior centroid (canonical axis 1): 1 = lowest.
    A disc takes 200 + k of the nearest vertebra k above it (the largest such disc wins); discs
    above every vertebra continue the count upwards; any other disc takes the next free number.
    Beyond 25 vertebrae or discs the smallest are dropped.
    """
    v_rows, v_sizes = _rows_and_sizes(verts)
    d_rows, d_sizes = disc_stats if disc_stats is not None else _rows_and_sizes(discs)
    if disc_lut is None:
        disc_lut = np.arange(len(d_sizes))
    disc_lut = np.asarray(disc_lut)[: len(d_sizes)]
    d_sizes_raw, d_sizes = d_sizes, np.bincount(disc_lut, weights=d_sizes, minlength=int(disc_lut.max(initial=0)) + 1)
    d_sizes[0] = 0
    d_rows = np.bincount(disc_lut, weights=d_rows * d_sizes_raw, minlength=len(d_sizes)) / np.maximum(d_sizes, 1)
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
    for d, k in sorted(zip(d_ids, wanted), key=lambda dk: (-d_sizes[dk[0]], d_rows[dk[0]])):  # the largest (then highest) disc below a vertebra claims it
        if k <= MAX_INDEX and k not in claims:
            claims[k] = int(d)
    pending = [int(d) for d in d_ids if int(d) not in claims.values()]
    free = [k for k in range(max(claims, default=0) + 1, MAX_INDEX + 1)]
    free += [k for k in range(1, MAX_INDEX + 1) if k not in claims and k not in free]
    claims.update(zip(free, pending))
    d_lut = np.zeros(len(d_sizes), dtype=np.int16)
    for k, d in claims.items():
        d_lut[d] = DISC_OFFSET + k
    return v_lut[verts] + d_lut[disc_lut][discs]


def _rows_and_sizes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-1 centroid and voxel count per id (index = id)."""
    return _centroid_rows(cc3d.statistics(np.ascontiguousarray(ids)))


def _centroid_rows(stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """Axis-1 centroid and voxel count per id from cc3d statistics."""
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
    below CANAL_FRACTION of the largest canal piece are dropped as well. Counting and relabelling
    touch only the foreground voxels.
    """
    ids, n = cc3d.connected_components(classes, connectivity=26, return_N=True)
    foreground = classes > 0
    fg_ids = ids[foreground]
    sizes = np.bincount(fg_ids, minlength=n + 1)
    kind = np.zeros(n + 1, dtype=np.uint8)
    kind[fg_ids] = classes[foreground]
    kept = sizes >= min_voxels
    canal = kept & (kind == CANAL)
    canal &= sizes >= CANAL_FRACTION * sizes[canal].max(initial=0)
    disc = kept & (kind == DISC)
    disc_lut = np.zeros(n + 1, dtype=np.uint32)
    disc_lut[disc] = np.arange(1, disc.sum() + 1)
    out = []
    for lut in (kept & (kind == VERTEBRA), disc_lut, canal):
        array = np.zeros(classes.shape, dtype=lut.dtype)
        array[foreground] = lut[fg_ids]
        out.append(array)
    return out[0], out[1], out[2]


def _disc_plane(points: np.ndarray) -> DiscPlane:
    """Fit a plate to disc voxel positions (N, 3) in mm."""
    centre = points.mean(axis=0)
    rel = points - centre
    flat = np.ptp(points[:, 0]) == 0  # a disc seen in one sagittal slice: its normal lies in that slice
    _, vectors = np.linalg.eigh((rel.T @ rel)[1:, 1:] if flat else rel.T @ rel)  # ascending: the thinnest direction
    normal = np.concatenate([[0.0], vectors[:, 0]]) if flat else vectors[:, 0]
    return DiscPlane(centre, normal, float(np.sqrt(((rel**2).sum(axis=1) - (rel @ normal) ** 2).max())))


def _merge_disc_pieces(discs: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, list[DiscPlane], tuple[np.ndarray, np.ndarray]]:
    """Join each disc piece whose centre lies in the band of a larger disc to it: (LUT of disc ids, the
    planes, (axis-1 centroid, voxel count) per disc id)."""
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
    return target.astype(np.uint32), list(planes.values()), _centroid_rows(stats)


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
    while (box := _bbox(todo)) is not None:
        travelled += step
        allowed = np.floor(travelled / coarse_mm + 1e-6) > moves
        moves += allowed
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)  # only around what is left to do
        grown = _max3(labels[box], [axis for axis in range(3) if allowed[axis]])
        new = todo[box] & (grown > 0)
        if not new.any() and allowed.all():
            break
        labels[box][new] = grown[new]
        todo[box] &= ~new
    return labels


def _max3(array: np.ndarray, axes: list[int]) -> np.ndarray:
    """Maximum over each cell and its two neighbours along each of ``axes`` (the edge has no outside);
    the same as scipy's maximum_filter of size 3 on those axes, several times faster."""
    out = array.copy()
    for axis in axes:
        low = tuple(slice(None, -1) if a == axis else slice(None) for a in range(array.ndim))
        high = tuple(slice(1, None) if a == axis else slice(None) for a in range(array.ndim))
        grown = out.copy()
        np.maximum(grown[high], out[low], out=grown[high])
        np.maximum(grown[low], out[high], out=grown[low])
        out = grown
    return out


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
    dist = distance_mm(labels > 0, coarse_mm)
    seeded = int(labels.max())
    attach, next_id = np.zeros(labels.shape, dtype=bool), seeded + 1
    for piece in np.unique(pieces[orphans]):
        own = pieces == piece
        centre = _cell_mm(np.argwhere(own).mean(axis=0, keepdims=True), factors, spacing)
        if dist[own].min() <= ATTACH_MM or (_behind_canal(centre, front)[0] and dist[own].min() <= POSTERIOR_MM):
            attach |= own
        else:
            labels[own] = next_id
            next_id += 1
    if attach.any():  # cell by cell to the nearest seeded vertebra (not one of the new ones)
        labels[attach] = nearest_label(np.where(labels <= seeded, labels, 0), coarse_mm, np.argwhere(attach), dist[attach])
    return labels


@dataclass
class _Parts:
    """Per-id statistics (index = id) measured on the coarse grid: volume (mm3), centre (mm), box of
    coarse cells and the box of full-resolution voxels it covers."""

    sizes: np.ndarray
    centres: np.ndarray
    cells: list
    boxes: list

    @classmethod
    def of(cls, coarse: np.ndarray, factors: tuple[int, ...], spacing: np.ndarray, shape: tuple[int, ...]) -> "_Parts":
        stats = cc3d.statistics(np.ascontiguousarray(coarse))
        sizes = np.asarray(stats["voxel_counts"]).astype(float) * float(np.prod(spacing * factors))
        sizes[0] = 0
        centres = _cell_mm(np.nan_to_num(np.asarray(stats["centroids"], dtype=float).reshape(-1, 3)), factors, spacing)
        cells = list(stats["bounding_boxes"])
        boxes = [tuple(slice(c.start * f, min(c.stop * f, n)) for c, f, n in zip(box, factors, shape)) if box else None for box in cells]
        return cls(sizes, centres, cells, boxes)

    def present(self) -> np.ndarray:
        return np.flatnonzero(self.sizes)


def fit_column(verts: np.ndarray, cv: np.ndarray, discs: np.ndarray, disc_lut: np.ndarray, canal: np.ndarray, spacing: tuple[float, float, float], records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the spine column: vertebra ids (and the same on the coarse grid, see split_vertebrae), disc
    component ids and the LUT that maps them to discs (crop arrays) -> (cleaned vertebra ids, new disc LUT);
    records appended.

    Discs and vertebrae linked by contact (a vertebra within CONTACT_MM of a disc; vertebrae touching
    the main canal are linked through it) form groups; the chain is the group with the most links
    (see _groups); groups continuing it across a gap join it, nearest first; its discs are then those
    on one spine (_in_line). With fewer than MIN_LINKS links nothing is judged and everything is kept.
    """
    sp = np.asarray(spacing)
    factors = coarse_factors(spacing)
    coarse_mm = sp * factors
    cd = disc_lut[_sample(discs, factors, cv.shape)]
    vparts, dparts = _Parts.of(cv, factors, sp, verts.shape), _Parts.of(cd, factors, sp, discs.shape)
    contacts = _contacts(cv, cd, dparts, factors, coarse_mm)
    canal_c = _main_canal(_sample(canal, factors, cv.shape), coarse_mm)
    near_canal = _near_canal(cd, canal_c, dparts, coarse_mm)
    on_canal = _on_canal(cv, canal_c, vparts, coarse_mm)
    groups = _groups(contacts, dparts, near_canal, on_canal, sp)
    if not groups:
        return verts, disc_lut
    chain_v, chain_d = groups.pop(0)
    if _links(contacts, chain_d, dparts, sp) + len(chain_v & on_canal) < MIN_LINKS:
        return verts, disc_lut  # too short a chain to judge the rest by
    band = _Band.of(chain_v, chain_d, vparts, dparts, sp, canal_c, coarse_mm)
    if band is None:
        return verts, disc_lut
    while groups and chain_d:  # other groups continuing the column (a gap in the chain) join it, nearest first
        groups = [g for g in groups if g[1]]
        if not groups:
            break
        gap = {i: min((abs(dparts.centres[d][1] - np.clip(dparts.centres[d][1], band.top, band.bottom)), d) for d in g[1]) for i, g in enumerate(groups)}
        i = min(gap, key=lambda i: gap[i][0])
        if not band.holds(dparts.centres[gap[i][1]], JOIN_MM, JOIN_MM, level=False):  # its disc nearest to the chain
            break
        group = groups[i]
        chain_v, chain_d = chain_v | group[0], chain_d | group[1]
        band = _Band.of(chain_v, chain_d, vparts, dparts, sp, canal_c, coarse_mm)
        groups.pop(i)
    in_line = _in_line(chain_d, dparts, near_canal)
    if in_line != chain_d:  # discs off the chain's line (a stray glued to it through a vertebra) leave it
        chain_d = in_line
        chain_v = {v for d in chain_d for v in contacts[d][0] | contacts[d][1]} | (chain_v & on_canal)
        band = _Band.of(chain_v, chain_d, vparts, dparts, sp, canal_c, coarse_mm)
    for v in chain_v:  # what hangs far in front of or behind a chain vertebra is not part of it
        _trim(verts, v, vparts, band, sp, records)
    median_mm3 = float(np.median(vparts.sizes[list(chain_v)])) if chain_v else 0.0
    # other vertebrae: bodies in line with the column stay, pieces touching it join the nearest chain vertebra,
    # pieces where posterior elements can be join the chain vertebra at their height, the rest go
    profiles = {v: _body_profile(verts, v, vparts.boxes[v], band, sp) for v in chain_v}
    heights = {v: (first + len(profile) / 2) * sp[1] for v, (profile, first) in profiles.items() if len(profile)}
    tall = float(np.median([len(profile) for profile, _ in profiles.values() if len(profile)] or [0])) * sp[1]
    is_chain = np.zeros(int(cv.max()) + 1, dtype=bool)
    is_chain[list(chain_v)] = True
    for v in (int(v) for v in vparts.present() if v not in chain_v):
        if band.holds(vparts.centres[v], FRONT_MM, 0.0) and vparts.sizes[v] >= 0.25 * median_mm3:
            continue  # a body in line with the column
        box = vparts.boxes[v]
        own = verts[box] == v
        mm3 = float(own.sum() * np.prod(sp))
        dist, nearest = _nearest_chain(cv, is_chain, vparts.cells[v], np.nonzero(own), box, factors, coarse_mm)
        touching = float(dist.min()) <= ATTACH_MM
        if not touching and band.holds(vparts.centres[v], FRONT_MM, POSTERIOR_MM):
            # posterior elements hang on the body whose middle is nearest to their upper part; beyond the
            # chain's ends they are a vertebra of their own (its body cut by the field of view)
            upper = (box[1].start + 0.25 * (box[1].stop - box[1].start)) * sp[1]
            target = min(heights, key=lambda c: abs(heights[c] - upper), default=None)
            if target is not None and abs(heights[target] - upper) <= 0.75 * tall:
                verts[box][own] = target
                records.append(_record("reassigned", "vertebra", v, vparts, mm3, to=[int(target)], reason="posterior element at the height of a chain body"))
            continue
        verts[box][own] = nearest if touching else 0
        if touching:
            records.append(_record("reassigned", "vertebra", v, vparts, mm3, to=sorted(int(t) for t in np.unique(nearest))))
        else:
            records.append(_record("dropped", "vertebra", v, vparts, mm3, reason="off the spine column"))
    # other discs: in line with the column they stay
    d_lut = np.arange(int(disc_lut.max(initial=0)) + 1, dtype=np.int64)
    for d in dparts.present():
        if d not in chain_d and not band.holds(dparts.centres[d], JOIN_MM, JOIN_MM, level=False):
            d_lut[d] = 0
            records.append(_record("dropped", "disc", int(d), dparts, reason="off the spine column"))
    # discs touching the same bodies on the same sides, at the same height, are one disc
    sides: dict[tuple, int] = {}
    for d in sorted(chain_d, key=lambda d: -dparts.sizes[d]):
        key = (frozenset(contacts[d][0]), frozenset(contacts[d][1]))
        host = sides.get(key)
        if host is not None and (key[0] or key[1]) and abs(dparts.centres[d][1] - dparts.centres[host][1]) <= SAME_LEVEL_MM:
            d_lut[d] = host
            records.append(_record("merged", "disc", int(d), dparts, into=host))
        else:
            sides.setdefault(key, int(d))
    deep = {d for d in chain_d if _depth(dparts, d, sp) >= DISC_DEPTH_MM}
    verts, merged = _merge_and_split_bodies(verts, vparts, {d: contacts[d] for d in deep}, chain_v, band, sp, records)
    for d in dparts.present():  # a disc piece between two bodies now merged lies inside a body
        above, below = ({merged.get(v, v) for v in side} for side in contacts[d])
        if above & below and not contacts[d][0] & contacts[d][1] and d_lut[d]:
            d_lut[d] = 0
            records.append(_record("dropped", "disc", int(d), dparts, reason="inside a body (between two pieces merged into one)"))
    disc_lut = d_lut.astype(disc_lut.dtype)[disc_lut]
    return verts, disc_lut


@dataclass
class _Band:
    """Where the column's bodies lie, in mm: the discs' front and back lines along the rows (each
    disc's centre -/+ half the median disc depth), their left-right midline, the chain's top and bottom."""

    rows: np.ndarray
    front: np.ndarray
    back: np.ndarray
    midline: float
    top: float
    bottom: float

    @classmethod
    def of(cls, chain_v: set, chain_d: set, vparts: _Parts, dparts: _Parts, sp: np.ndarray, canal: np.ndarray, coarse_mm: np.ndarray) -> "_Band | None":
        """From two or more discs; else from the canal (bodies lie BODY_DEPTH_MM in front of its front wall); else None."""
        spans = [vparts.boxes[v][1] for v in chain_v] + [dparts.boxes[d][1] for d in chain_d]
        top, bottom = min(r.start for r in spans) * sp[1], max(r.stop for r in spans) * sp[1]
        if len(chain_d) >= 2:
            d_ids = np.array(sorted(chain_d))
            rows = dparts.centres[d_ids, 1]
            order = np.argsort(rows)
            half = float(np.median([dparts.boxes[d][2].stop - dparts.boxes[d][2].start for d in d_ids])) * sp[2] / 2
            front = dparts.centres[d_ids, 2][order] - half  # the median depth about each disc's centre: robust
            back = dparts.centres[d_ids, 2][order] + half  # to a disc merged with a stray piece
            midline = float(np.average(dparts.centres[d_ids, 0], weights=dparts.sizes[d_ids]))
            return cls(rows[order], front, back, midline, top, bottom)
        if not canal.any():
            return None
        profile = canal.any(axis=0)
        rows = np.flatnonzero(profile.any(axis=1))
        wall = (profile[rows].argmax(axis=1) + 0.5) * coarse_mm[2]
        midline = float((np.flatnonzero(canal.any(axis=(1, 2))).mean() + 0.5) * coarse_mm[0])
        return cls((rows + 0.5) * coarse_mm[1], wall - BODY_DEPTH_MM, wall, midline, top, bottom)

    def line(self, values: np.ndarray, row: np.ndarray) -> np.ndarray:
        """A line (front or back) at rows in mm: interpolated between discs, level beyond the end ones."""
        return np.interp(row, self.rows, values)

    def slack(self, row):
        """How far the spine may have turned front or back at rows (mm) beyond the chain's end discs (mm)."""
        return np.minimum(LINE_MM, CONE * np.maximum(np.maximum(self.rows[0] - row, row - self.rows[-1]), 0.0))

    def holds(self, point: np.ndarray, ahead: float, behind: float, level: bool = True) -> bool:
        """True if a point (mm) lies at the chain's height (LEVEL_MM margin; any height without ``level``),
        near its midline, and between ``ahead`` mm in front of the front line and ``behind`` mm behind the back line."""
        if level and not self.top - LEVEL_MM <= point[1] <= self.bottom + LEVEL_MM:
            return False
        if abs(point[0] - self.midline) > LATERAL_MM:
            return False
        slack = self.slack(point[1])
        return self.line(self.front, point[1]) - ahead - slack <= point[2] <= self.line(self.back, point[1]) + behind + slack


def _sample(array: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The centre voxel of each coarse cell (zero where a last, partial cell has none)."""
    sampled = array[tuple(slice(f // 2, None, f) for f in factors)]
    out = np.zeros(shape, dtype=array.dtype)
    out[tuple(slice(0, n) for n in sampled.shape)] = sampled
    return out


def _nearest_chain(cv: np.ndarray, is_chain: np.ndarray, cells: tuple[slice, ...], voxels: tuple[np.ndarray, ...], box: tuple[slice, ...], factors, coarse_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For voxels (indices within the full-resolution box) of a piece: distance in mm to the nearest chain
    vertebra cell within ATTACH_MM of the piece's coarse box (inf beyond), and that vertebra's id."""
    reach = [int(math.ceil(ATTACH_MM / c)) + 1 for c in coarse_mm]
    around = tuple(slice(max(c.start - r, 0), min(c.stop + r, n)) for c, r, n in zip(cells, reach, cv.shape))
    ids = cv[around]
    chain = is_chain[ids]
    if not chain.any():
        return np.full(len(voxels[0]), np.inf), np.zeros(len(voxels[0]), dtype=cv.dtype)
    at = tuple(np.clip((i + b.start) // f, a.start, a.stop - 1) - a.start for i, b, f, a in zip(voxels, box, factors, around))
    cells, inverse = np.unique(np.stack(at, axis=1), axis=0, return_inverse=True)
    reach = distance_mm(chain, coarse_mm)[tuple(cells.T)]
    nearest = nearest_label(np.where(chain, ids, 0), coarse_mm, cells, reach)
    return reach[inverse.ravel()], nearest[inverse.ravel()]


def _contacts(cv: np.ndarray, cd: np.ndarray, dparts: _Parts, factors, coarse_mm: np.ndarray) -> dict[int, tuple[set, set]]:
    """disc id -> (vertebrae touching it from above, from below), on the coarse grid."""
    reach = [int(math.ceil(CONTACT_MM / c)) + 1 for c in coarse_mm]
    out = {}
    for d in dparts.present():
        box = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(dparts.cells[d], reach, cd.shape))
        own = cd[box] == d
        above, below = set(), set()
        if own.any():
            near = distance_mm(own, coarse_mm) <= CONTACT_MM
            touching = cv[box][near]
            rows = np.nonzero(near)[1]
            disc_row = np.nonzero(own)[1].mean()
            for v in np.unique(touching[touching > 0]):
                sel = touching == v
                if sel.sum() >= 2:
                    (above if rows[sel].mean() < disc_row else below).add(int(v))
        out[int(d)] = (above, below)
    return out


def _main_canal(canal: np.ndarray, coarse_mm: np.ndarray) -> np.ndarray:
    """The largest canal component on the coarse grid if it is at least CANAL_LENGTH_MM long, else nothing."""
    ids = cc3d.connected_components(canal, connectivity=26)
    if not ids.any():
        return canal
    main = ids == np.bincount(ids.ravel())[1:].argmax() + 1
    rows = np.flatnonzero(main.any(axis=(0, 2)))
    return main if (rows[-1] - rows[0] + 1) * coarse_mm[1] >= CANAL_LENGTH_MM else np.zeros_like(canal)


def _on_canal(cv: np.ndarray, canal: np.ndarray, vparts: _Parts, coarse_mm: np.ndarray) -> set:
    """Vertebra ids with cells within CONTACT_MM of the canal and their centre in front of it (bodies,
    not the arches behind it)."""
    box = _bbox(canal)
    if box is None:
        return set()
    profile = canal.any(axis=0)
    rows = np.flatnonzero(profile.any(axis=1))
    middle = np.array([np.flatnonzero(profile[r]).mean() for r in rows])

    def in_front(v: int) -> bool:
        return vparts.centres[v][2] < (np.interp(vparts.centres[v][1] / coarse_mm[1] - 0.5, rows, middle) + 0.5) * coarse_mm[2]

    reach = [int(math.ceil(CONTACT_MM / c)) + 1 for c in coarse_mm]
    box = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(box, reach, canal.shape))
    near = distance_mm(canal[box], coarse_mm) <= CONTACT_MM
    ids, counts = np.unique(cv[box][near], return_counts=True)
    return {int(i) for i, n in zip(ids, counts) if i and n >= 2 and in_front(int(i))}


def _near_canal(cd: np.ndarray, canal: np.ndarray, dparts: _Parts, coarse_mm: np.ndarray) -> set:
    """Disc ids whose box grown by CANAL_MM holds canal (all discs where there is no canal)."""
    present = {int(d) for d in dparts.present()}
    if not canal.any():
        return present
    reach = [int(math.ceil(CANAL_MM / c)) for c in coarse_mm]
    return {d for d in present if canal[tuple(slice(max(b.start - r, 0), b.stop + r) for b, r in zip(dparts.cells[d], reach))].any()}


def _in_line(chain_d: set, dparts: _Parts, near_canal: set) -> set:
    """The chain's discs that follow one spine: the longest path of discs, ordered by height, each
    STEP_MM to MAX_STEP_MM below the previous and at most LINE_MM off it anterior-posterior (then the
    most near the canal, then the deepest discs); plus pieces at the same level as a disc of the path."""
    ds = sorted(chain_d, key=lambda d: dparts.centres[d][1])
    if len(ds) < 3:
        return set(ds)
    rows, ap = dparts.centres[ds, 1], dparts.centres[ds, 2]
    depth = [float(dparts.boxes[d][2].stop - dparts.boxes[d][2].start) for d in ds]
    score, previous = [], []
    for j in range(len(ds)):
        own = (1, int(ds[j] in near_canal), depth[j])
        options = [(tuple(a + b for a, b in zip(score[i], own)), i) for i in range(j)
                   if STEP_MM <= rows[j] - rows[i] <= MAX_STEP_MM and abs(ap[j] - ap[i]) <= LINE_MM]
        best = max(options, default=(own, -1))
        score.append(best[0])
        previous.append(best[1])
    j = max(range(len(ds)), key=lambda j: score[j])
    path = []
    while j >= 0:
        path.append(j)
        j = previous[j]
    level = {ds[k] for k in range(len(ds)) for i in path if abs(rows[k] - rows[i]) <= SAME_LEVEL_MM and abs(ap[k] - ap[i]) <= LINE_MM}
    return level | {ds[i] for i in path}


def _trim(verts: np.ndarray, v: int, vparts: _Parts, band: "_Band", sp: np.ndarray, records: list[dict]) -> None:
    """Cut from chain vertebra v what lies more than TRIM_MM in front of the band or POSTERIOR_MM behind it."""
    box = vparts.boxes[v]
    rows = np.arange(box[1].start, box[1].stop) * sp[1]
    depth = np.arange(box[2].start, box[2].stop) * sp[2]
    slack = band.slack(rows)[:, None]
    outside = (depth[None, :] < band.line(band.front, rows)[:, None] - TRIM_MM - slack) | (depth[None, :] > band.line(band.back, rows)[:, None] + POSTERIOR_MM + slack)
    if outside.any():
        cut = (verts[box] == v) & outside[None]
        if cut.any():
            verts[box][cut] = 0
            records.append({"action": "trimmed", "class": "vertebra", "id": int(v), "volume_ml": round(float(cut.sum() * np.prod(sp)) / 1000, 3),
                            "reason": "part far in front of or behind the column"})


def _depth(dparts: _Parts, d: int, sp: np.ndarray) -> float:
    """Anterior-posterior extent of disc d in mm."""
    return (dparts.boxes[d][2].stop - dparts.boxes[d][2].start) * sp[2]


def _links(contacts: dict[int, tuple[set, set]], discs, dparts: _Parts, sp: np.ndarray) -> int:
    """Number of discs at least DISC_DEPTH_MM deep with a vertebra touching them from above and from below."""
    return sum(bool(contacts[d][0]) and bool(contacts[d][1]) and _depth(dparts, d, sp) >= DISC_DEPTH_MM for d in discs)


def _groups(contacts: dict[int, tuple[set, set]], dparts: _Parts, near_canal: set, on_canal: set, sp: np.ndarray) -> list[tuple[set, set]]:
    """(vertebra ids, disc ids) of each group linked by contact (vertebrae touching the canal are linked
    through it), best first: most body-disc-body links (discs at least DISC_DEPTH_MM deep) plus vertebrae
    touching the canal, then the largest sum of disc depths, then discs near the canal."""
    parent: dict[tuple, tuple] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for d, (above, below) in contacts.items():
        for v in above | below:
            parent[find(("v", v))] = find(("d", d))
    for v in on_canal:
        parent[find(("v", v))] = find(("c", 0))
    groups: dict[tuple, list] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    depth = {d: _depth(dparts, d, sp) for d in contacts}

    def rank(nodes):
        discs = [i for k, i in nodes if k == "d"]
        canal = sum(k == "v" and i in on_canal for k, i in nodes)
        return -(_links(contacts, discs, dparts, sp) + canal), -sum(depth[d] for d in discs), -any(d in near_canal for d in discs)

    return [({i for k, i in nodes if k == "v"}, {i for k, i in nodes if k == "d"}) for nodes in sorted(groups.values(), key=rank)]


def _merge_and_split_bodies(verts: np.ndarray, vparts: _Parts, contacts: dict, chain_v: set, band: _Band, sp: np.ndarray, records: list[dict]) -> tuple[np.ndarray, dict[int, int]]:
    """Merge vertebrae touching one disc (of ``contacts``) from the same side (pieces of one body), and a
    short chain body into its neighbour when no disc lies between them; cut a body far taller than the
    median. Returns the ids and {merged id: id it joined}."""
    lut = np.arange(int(verts.max()) + 1)
    merged: set = set()
    profiles = {v: _body_profile(verts, v, vparts.boxes[v], band, sp) for v in chain_v}
    heights = {v: len(p) * sp[1] for v, (p, _) in profiles.items() if len(p)}
    median = float(np.median(list(heights.values()))) if len(heights) >= 3 else np.inf

    def span(a: int, b: int) -> float:
        (pa, fa), (pb, fb) = profiles[a], profiles[b]
        return (max(fa + len(pa), fb + len(pb)) - min(fa, fb)) * sp[1]

    between = {frozenset((a, b)) for above, below in contacts.values() for a in above for b in below}
    for side in (s for pair in contacts.values() for s in pair if len(s) > 1):
        host = max(side, key=lambda v: (vparts.sizes[v], -v))
        for v in side - {host}:
            if (lut[v] == v and lut[host] == host and v in heights and host in heights and frozenset((v, host)) not in between
                    and span(v, host) <= SAME_BODY_RATIO * median):
                lut[v] = host
                merged |= {v, host}
                records.append({"action": "merged", "class": "vertebra", "id": int(v), "into": int(host), "reason": "two pieces of one body touching one disc from the same side"})
    ordered = sorted((v for v in heights if lut[v] == v), key=lambda v: profiles[v][1])
    for upper, lower in zip(ordered, ordered[1:]):
        if upper in merged or frozenset((upper, lower)) in between or upper == ordered[0] or lower == ordered[-1]:
            continue  # the end bodies may be short because the field of view cuts them
        if span(upper, lower) <= MERGE_RATIO * median and min(heights[upper], heights[lower]) < SHORT_RATIO * median:
            lut[lower] = upper
            merged |= {upper, lower}
            records.append({"action": "merged", "class": "vertebra", "id": int(lower), "into": int(upper), "reason": "a short body and its neighbour without a disc between them"})
    if merged:
        verts = lut.astype(verts.dtype)[verts]
    joined = {int(v): int(lut[v]) for v in merged if lut[v] != v}
    next_id = int(verts.max()) + 1
    for v in heights:
        if v in merged or heights[v] <= SPLIT_RATIO * median:
            continue
        profile, first = profiles[v]
        parts = int(round(heights[v] / median))
        window = max(1, len(profile) // (2 * parts))
        cuts = []
        for i in range(1, parts):  # cut at the narrowest row near each equal division
            target = int(round(i * len(profile) / parts))
            lo, hi = max(1, target - window), min(len(profile) - 1, target + window + 1)
            cuts.append(first + lo + int(np.argmin(profile[lo:hi])))
        box = vparts.boxes[v]
        own = verts[box] == v
        ids = np.concatenate([[v], np.arange(next_id, next_id + len(cuts))]).astype(verts.dtype)
        piece = ids[np.searchsorted(np.asarray(cuts), np.arange(box[1].start, box[1].stop), side="right")]
        verts[box][own] = np.broadcast_to(piece[None, :, None], own.shape)[own]
        records.append({"action": "split", "class": "vertebra", "id": int(v), "into": [int(i) for i in ids],
                        "reason": f"body {heights[v]:.0f} mm tall against a median of {median:.0f} mm"})
        next_id += len(cuts)
    return verts, joined


def _body_profile(verts: np.ndarray, v: int, box: tuple[slice, ...], band: _Band, sp: np.ndarray) -> tuple[np.ndarray, int]:
    """(voxels per row of vertebra v's body, i.e. its part between the discs' front and back lines; first row)."""
    rows_mm = np.arange(box[1].start, box[1].stop) * sp[1]
    lo = np.floor(band.line(band.front, rows_mm) / sp[2]).astype(int)
    hi = np.ceil(band.line(band.back, rows_mm) / sp[2]).astype(int)
    depth = np.arange(box[2].start, box[2].stop)
    inside = (depth[None, :] >= lo[:, None]) & (depth[None, :] < hi[:, None])
    counts = ((verts[box] == v) & inside[None]).sum(axis=(0, 2))
    hit = np.flatnonzero(counts)
    return (counts[hit[0] : hit[-1] + 1], box[1].start + int(hit[0])) if len(hit) else (np.zeros(0), 0)


def _drop_fragments(labels: np.ndarray, min_voxels: int, records: list[dict]) -> None:
    """Remove pieces of a structure smaller than min_voxels cut off from it by the splitting (in place)."""
    ids, n = cc3d.connected_components(labels, connectivity=26, return_N=True)
    foreground = labels > 0
    fg_ids = ids[foreground]
    small = np.bincount(fg_ids, minlength=n + 1) < min_voxels
    small[0] = False
    if small.any():
        values = labels[foreground]
        values[small[fg_ids]] = 0
        labels[foreground] = values
        records.append({"action": "dropped", "class": "fragment", "count": int(small.sum()), "reason": "pieces of a structure below the minimum component volume"})


def _mark_partial(labels: np.ndarray, box: tuple[slice, ...], rows: int, records: list[dict]) -> None:
    """Vertebrae reaching the first or last row of the volume (cut by the field of view) -> 100+k, in place."""
    edges = [i for i, at in ((0, box[1].start == 0), (-1, box[1].stop == rows)) if at]
    for edge in edges:
        cut = np.unique(labels[:, edge][(labels[:, edge] >= 1) & (labels[:, edge] <= MAX_INDEX)])
        for value in cut:
            labels[labels == value] = PARTIAL_OFFSET + value
            records.append({"action": "partial", "class": "vertebra", "label": int(PARTIAL_OFFSET + value), "reason": "cut by the " + ("superior" if edge == 0 else "inferior") + " edge of the field of view"})


def _record(action: str, kind: str, ident: int, parts: _Parts, mm3: float | None = None, **extra) -> dict:
    """A record of an action on a piece; its volume from the coarse grid unless ``mm3`` is given."""
    volume = float(parts.sizes[ident]) if mm3 is None else mm3
    return {"action": action, "class": kind, "id": int(ident), "volume_ml": round(volume / 1000, 3),
            "centre_mm": [round(float(c), 1) for c in parts.centres[ident]], **extra}


def _final_record(record: dict, labels: np.ndarray, verts: np.ndarray, discs: np.ndarray, disc_lut: np.ndarray, offset: np.ndarray) -> dict:
    """A record with crop ids replaced by final labels and positions moved to the whole volume."""
    out = dict(record)

    def label_of(ident):
        hit = labels[verts == ident] if out.get("class") == "vertebra" else labels[np.isin(discs, np.flatnonzero(disc_lut == ident))]
        return int(hit[0]) if hit.size else None

    if out["action"] == "trimmed":
        out["label"] = label_of(out.pop("id"))
    for key in ("into", "to"):
        if key in out:
            out[key] = [label_of(i) for i in out[key]] if isinstance(out[key], list) else label_of(out[key])
    if "centre_mm" in out:
        out["centre_mm"] = [round(float(c + o), 1) for c, o in zip(out["centre_mm"], offset)]
    if out["action"] in ("dropped", "reassigned", "merged", "split"):
        out.pop("id", None)
    return out
