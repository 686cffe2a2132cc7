"""The spine column: the chain chosen (chain.py), then what is off it pruned and its bodies made whole.

Anatomy's rules: a vertebra has a body in front of the canal; a piece behind it (arch, spinous process)
joins the body at its height and never gets a number of its own; what lies below the lowest disc,
has no disc below it and is not a vertebra cut by the field of view is the sacrum, which SPIDER does
not label; a disc lies between the bodies it touches.
"""

from __future__ import annotations

import cc3d
import numpy as np

from algorithm.distance import distance_mm, nearest_label

from .bodies import Profile, body_profile, body_profiles, median_height, merge_and_split_bodies
from .chain import Column, choose_chain
from .grid import grow_box, reach_cells
from .params import P
from .parts import Band
from .records import record


def fit_column(verts: np.ndarray, cv: np.ndarray, discs: np.ndarray, disc_lut: np.ndarray, canal: np.ndarray, spacing,
               edges: tuple[tuple[bool, bool], ...], records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the spine column: vertebra ids (and the same on the coarse grid, see split_vertebrae), disc
    component ids and the LUT that maps them to discs (crop arrays) -> (cleaned vertebra ids, new disc LUT);
    records appended. ``edges``: per axis, whether the crop's first and last planes are the volume's (the
    edges of the field of view).
    Without a chain to judge by (choose_chain), everything is kept."""
    col = Column.of(verts, cv, discs, disc_lut, canal, spacing)
    chain = choose_chain(col)
    if chain is None:
        return verts, disc_lut
    chain_v, chain_d, band = chain
    for v in chain_v:  # what hangs far in front of or behind a chain vertebra is not part of it
        _trim(verts, v, col, band, records)
    profiles = body_profiles(verts, chain_v, band, col.sp)
    chain_v -= _drop_sacrum(verts, col, chain_d, band, edges[1][1], records)
    volumes = {v: float(p.sum()) for v, (p, _) in profiles.items()}
    least = P.body_fraction * float(np.median(list(volumes.values()) or [0]))
    cut = {v for v in chain_v if _at_edge(col, v, verts.shape, edges)}  # a vertebra cut by the field of view may show little body
    chain_v -= {v for v in chain_v - cut if volumes.get(v, 0.0) < least and _posterior(col, v, band)}  # an arch, not a vertebra
    profiles = {v: p for v, p in profiles.items() if v in chain_v}
    _prune_vertebrae(verts, col, chain_v, band, profiles, edges, records)
    d_lut = _prune_discs(col, chain_v, chain_d, band, disc_lut, records)
    between = {frozenset((a, b)) for d in chain_d for a in col.contacts[d][0] for b in col.contacts[d][1]}
    same_side = [side for d in chain_d if col.depth(d) >= P.disc_depth_mm for side in col.contacts[d] if len(side) > 1]
    verts, merges = merge_and_split_bodies(verts, len(col.vparts.sizes), body_profiles(verts, chain_v, band, col.sp), same_side, between, col.sp, records)
    _drop_sacrum(verts, col, chain_d, band, edges[1][1], records)
    for d in col.dparts.present():  # a disc piece between two bodies now merged lies inside a body
        above, below = ({merges.find(v) for v in side} for side in col.contacts[d])
        if above & below and not col.contacts[d][0] & col.contacts[d][1] and d_lut[d]:
            d_lut[d] = 0
            records.append(record("dropped", "disc", int(d), col.dparts, reason="inside a body (between two pieces merged into one)"))
    return verts, d_lut.astype(disc_lut.dtype)[disc_lut]


def _posterior(col: Column, v: int, band: Band) -> bool:
    """True if piece v's centre lies behind the band's back line: posterior elements, not a body."""
    centre = col.vparts.centres[v]
    return bool(centre[2] > band.line(band.back, centre[1]))


def _at_edge(col: Column, v: int, shape: tuple[int, ...], edges: tuple[tuple[bool, bool], ...]) -> bool:
    """True if piece v reaches an edge of the field of view (``edges``: per axis, whether the crop's first and
    last planes are the volume's)."""
    return any((first and box.start == 0) or (last and box.stop == n) for box, (first, last), n in zip(col.vparts.boxes[v], edges, shape))


def _trim(verts: np.ndarray, v: int, col: Column, band: Band, records: list[dict]) -> None:
    """Cut from chain vertebra v what lies more than P.trim_mm in front of the band or P.posterior_mm behind it."""
    sp, box = col.sp, col.vparts.boxes[v]
    rows = np.arange(box[1].start, box[1].stop) * sp[1]
    depth = np.arange(box[2].start, box[2].stop) * sp[2]
    slack = band.slack(rows)[:, None]
    outside = (depth[None, :] < band.line(band.front, rows)[:, None] - P.trim_mm - slack) | (depth[None, :] > band.line(band.back, rows)[:, None] + P.posterior_mm + slack)
    if outside.any():
        cut = (verts[box] == v) & outside[None]
        if cut.any():
            verts[box][cut] = 0
            records.append({"action": "trimmed", "class": "vertebra", "id": int(v), "volume_ml": round(float(cut.sum() * np.prod(sp)) / 1000, 3),
                            "reason": "part far in front of or behind the column"})


def _drop_sacrum(verts: np.ndarray, col: Column, chain_d: set, band: Band, at_bottom: bool, records: list[dict]) -> set:
    """Drop the vertebrae in line with the column below its lowest disc (no disc below them) unless they are
    one vertebra cut by the inferior edge of the field of view: reaching that edge and no taller than
    P.sacrum_ratio bodies. That is where the sacrum lies, which SPIDER does not label. From fresh statistics
    of ``verts`` (run again once bodies are split: a body fused across the lowest disc is cut there);
    returns the ids dropped."""
    if not chain_d:
        return set()
    sp = col.sp
    stats = cc3d.statistics(np.ascontiguousarray(verts))
    sizes, boxes = np.asarray(stats["voxel_counts"]), stats["bounding_boxes"]
    centres = np.nan_to_num(np.asarray(stats["centroids"], dtype=float).reshape(-1, 3)) * sp
    floor = max(col.dparts.centres[d][1] for d in chain_d)
    ids = [v for v in range(1, len(sizes)) if sizes[v]]
    below = {v for v in ids if centres[v][1] > floor and band.holds(centres[v], P.front_mm, 0.0)}
    profiles = {v: body_profile(verts, v, boxes[v], band, sp) for v in ids}
    rows = [(first, first + len(p)) for v, (p, first) in profiles.items() if v in below and len(p)]
    if not rows:
        return set()
    height = (max(r[1] for r in rows) - min(r[0] for r in rows)) * sp[1]
    cut = at_bottom and any(boxes[v][1].stop == verts.shape[1] for v in below)
    if cut and height <= P.sacrum_ratio * median_height({v: p for v, p in profiles.items() if v not in below and len(p[0])}, sp):
        return set()
    for v in below:
        verts[boxes[v]][verts[boxes[v]] == v] = 0
        records.append({"action": "dropped", "class": "vertebra", "volume_ml": round(float(sizes[v] * np.prod(sp)) / 1000, 3),
                        "centre_mm": [round(float(c), 1) for c in centres[v]], "reason": "below the lowest disc, where the sacrum lies (SPIDER labels no sacrum)"})
    return below


def _prune_vertebrae(verts: np.ndarray, col: Column, chain_v: set, band: Band, profiles: dict[int, Profile], edges, records: list[dict]) -> None:
    """Vertebrae off the chain: bodies in line with the column stay; pieces touching it join the nearest chain
    vertebra; posterior elements join the chain body at their height; a body's remnant beyond the chain's
    ends stays where it reaches the edge of the field of view (its vertebra cut by it); the rest (skin,
    bowel, blobs) goes."""
    vparts, sp = col.vparts, col.sp
    body_voxels = float(np.median([p.sum() for p, _ in profiles.values()] or [0]))
    median_mm3 = float(np.median(vparts.sizes[list(chain_v)])) if chain_v else 0.0
    middles = {v: (first + len(p) / 2) * sp[1] for v, (p, first) in profiles.items()}
    tall = float(np.median([len(p) for p, _ in profiles.values()] or [0])) * sp[1]  # a body's height
    is_chain = np.zeros(int(col.cv.max()) + 1, dtype=bool)
    is_chain[list(chain_v)] = True
    for v in (int(v) for v in vparts.present() if v not in chain_v):
        box = vparts.boxes[v]
        own = verts[box] == v
        if not own.any():
            continue  # dropped already (the sacrum)
        if vparts.sizes[v] >= P.piece_body_fraction * median_mm3 and band.holds(vparts.centres[v], P.front_mm, 0.0):
            continue  # a body in line with the column
        body = body_profile(verts, v, box, band, sp)[0].sum()
        if body >= P.piece_body_fraction * body_voxels and band.holds(vparts.centres[v], P.front_mm, P.posterior_mm):
            continue  # a body with its arch, in line with the column
        posterior = _posterior(col, v, band)
        mm3 = float(own.sum() * np.prod(sp))
        dist, nearest = _nearest_chain(col, is_chain, vparts.cells[v], np.nonzero(own), box)
        if float(dist.min()) <= P.attach_mm:
            verts[box][own] = nearest
            records.append(record("reassigned", "vertebra", v, vparts, mm3, to=sorted(int(t) for t in np.unique(nearest))))
            continue
        if band.holds(vparts.centres[v], P.front_mm, P.posterior_mm):
            upper = (box[1].start + 0.25 * (box[1].stop - box[1].start)) * sp[1]  # posterior elements hang on the body nearest their upper part
            target = min(middles, key=lambda c: abs(middles[c] - upper), default=None)
            if target is not None and abs(middles[target] - upper) <= 0.75 * tall:
                verts[box][own] = target
                records.append(record("reassigned", "vertebra", v, vparts, mm3, to=[int(target)], reason="posterior element at the height of a chain body"))
                continue
            if not posterior and _at_edge(col, v, verts.shape, edges):
                continue  # a body's remnant beyond the chain's ends: its vertebra cut by the field of view
        verts[box][own] = 0
        records.append(record("dropped", "vertebra", v, vparts, mm3, reason="posterior element without a body" if posterior else "off the spine column"))


def _prune_discs(col: Column, chain_v: set, chain_d: set, band: Band, disc_lut: np.ndarray, records: list[dict]) -> np.ndarray:
    """LUT over disc ids: discs off the chain stay only when in line with the column, touching a chain vertebra
    and at least P.disc_fraction of the median chain disc; chain pieces touching the same bodies on the same
    sides at the same height are one disc."""
    dparts = col.dparts
    d_lut = np.arange(int(disc_lut.max(initial=0)) + 1, dtype=np.int64)
    median = float(np.median(dparts.sizes[list(chain_d)])) if chain_d else 0.0
    for d in dparts.present():
        touching = (col.contacts[d][0] | col.contacts[d][1]) & chain_v
        if d not in chain_d and not (band.holds(dparts.centres[d], P.join_mm, P.join_mm, level=False) and touching and dparts.sizes[d] >= P.disc_fraction * median):
            d_lut[d] = 0
            records.append(record("dropped", "disc", int(d), dparts, reason="off the spine column"))
    sides: dict[tuple, int] = {}
    for d in sorted(chain_d, key=lambda d: -dparts.sizes[d]):
        key = (frozenset(col.contacts[d][0]), frozenset(col.contacts[d][1]))
        host = sides.get(key)
        if host is not None and (key[0] or key[1]) and abs(dparts.centres[d][1] - dparts.centres[host][1]) <= P.same_level_mm:
            d_lut[d] = host
            records.append(record("merged", "disc", int(d), dparts, into=host))
        else:
            sides.setdefault(key, int(d))
    return d_lut


def _nearest_chain(col: Column, is_chain: np.ndarray, cells: tuple[slice, ...], voxels: tuple[np.ndarray, ...], box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For voxels (indices within the full-resolution box) of a piece: distance in mm to the nearest chain
    vertebra cell within P.attach_mm of the piece's coarse box (inf beyond), and that vertebra's id."""
    coarse_mm = col.coarse_mm
    around = grow_box(cells, reach_cells(P.attach_mm, coarse_mm), col.cv.shape)
    ids = col.cv[around]
    chain = is_chain[ids]
    if not chain.any():
        return np.full(len(voxels[0]), np.inf), np.zeros(len(voxels[0]), dtype=col.cv.dtype)
    at = tuple(np.clip((i + b.start) // f, a.start, a.stop - 1) - a.start for i, b, f, a in zip(voxels, box, col.factors, around))
    cells, inverse = np.unique(np.stack(at, axis=1), axis=0, return_inverse=True)
    reach = distance_mm(chain, coarse_mm)[tuple(cells.T)]
    nearest = nearest_label(np.where(chain, ids, 0), coarse_mm, cells, reach)
    return reach[inverse.ravel()], nearest[inverse.ravel()]
