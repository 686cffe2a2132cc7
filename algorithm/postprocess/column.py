"""The spine column: the chain of discs and vertebrae chosen, and what is off it pruned."""

from __future__ import annotations

import math

import cc3d
import numpy as np

from algorithm.distance import distance_mm, nearest_label

from .bodies import body_profile, merge_and_split_bodies
from .grid import bbox, coarse_factors, sample
from .params import P
from .parts import Band, Parts
from .records import record


def fit_column(verts: np.ndarray, cv: np.ndarray, discs: np.ndarray, disc_lut: np.ndarray, canal: np.ndarray, spacing: tuple[float, float, float], records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the spine column: vertebra ids (and the same on the coarse grid, see split_vertebrae), disc
    component ids and the LUT that maps them to discs (crop arrays) -> (cleaned vertebra ids, new disc LUT);
    records appended.

    Discs and vertebrae linked by contact (a vertebra within P.contact_mm of a disc; vertebrae touching
    the main canal are linked through it) form groups; the chain is the group with the most links
    (see _groups); groups continuing it across a gap join it, nearest first; its discs are then those
    on one spine (_in_line). With fewer than P.min_links links nothing is judged and everything is kept.
    """
    sp = np.asarray(spacing)
    factors = coarse_factors(spacing)
    coarse_mm = sp * factors
    cd = disc_lut[sample(discs, factors, cv.shape)]
    vparts, dparts = Parts.of(cv, factors, sp, verts.shape), Parts.of(cd, factors, sp, discs.shape)
    contacts = _contacts(cv, cd, dparts, factors, coarse_mm)
    canal_c = _main_canal(sample(canal, factors, cv.shape), coarse_mm)
    near_canal = _near_canal(cd, canal_c, dparts, coarse_mm)
    on_canal = _on_canal(cv, canal_c, vparts, coarse_mm)
    groups = _groups(contacts, dparts, near_canal, on_canal, sp)
    if not groups:
        return verts, disc_lut
    chain_v, chain_d = groups.pop(0)
    if _links(contacts, chain_d, dparts, sp) + len(chain_v & on_canal) < P.min_links:
        return verts, disc_lut  # too short a chain to judge the rest by
    band = Band.of(chain_v, chain_d, vparts, dparts, sp, canal_c, coarse_mm)
    if band is None:
        return verts, disc_lut
    while groups and chain_d:  # other groups continuing the column (a gap in the chain) join it, nearest first
        groups = [g for g in groups if g[1]]
        if not groups:
            break
        gap = {i: min((abs(dparts.centres[d][1] - np.clip(dparts.centres[d][1], band.top, band.bottom)), d) for d in g[1]) for i, g in enumerate(groups)}
        i = min(gap, key=lambda i: gap[i][0])
        if not band.holds(dparts.centres[gap[i][1]], P.join_mm, P.join_mm, level=False):  # its disc nearest to the chain
            break
        group = groups[i]
        chain_v, chain_d = chain_v | group[0], chain_d | group[1]
        band = Band.of(chain_v, chain_d, vparts, dparts, sp, canal_c, coarse_mm)
        groups.pop(i)
    in_line = _in_line(chain_d, dparts, near_canal)
    if in_line != chain_d:  # discs off the chain's line (a stray glued to it through a vertebra) leave it
        chain_d = in_line
        chain_v = {v for d in chain_d for v in contacts[d][0] | contacts[d][1]} | (chain_v & on_canal)
        band = Band.of(chain_v, chain_d, vparts, dparts, sp, canal_c, coarse_mm)
    for v in chain_v:  # what hangs far in front of or behind a chain vertebra is not part of it
        _trim(verts, v, vparts, band, sp, records)
    median_mm3 = float(np.median(vparts.sizes[list(chain_v)])) if chain_v else 0.0
    # other vertebrae: bodies in line with the column stay, pieces touching it join the nearest chain vertebra,
    # pieces where posterior elements can be join the chain vertebra at their height, the rest go
    profiles = {v: body_profile(verts, v, vparts.boxes[v], band, sp) for v in chain_v}
    heights = {v: (first + len(profile) / 2) * sp[1] for v, (profile, first) in profiles.items() if len(profile)}
    tall = float(np.median([len(profile) for profile, _ in profiles.values() if len(profile)] or [0])) * sp[1]
    is_chain = np.zeros(int(cv.max()) + 1, dtype=bool)
    is_chain[list(chain_v)] = True
    for v in (int(v) for v in vparts.present() if v not in chain_v):
        if band.holds(vparts.centres[v], P.front_mm, 0.0) and vparts.sizes[v] >= 0.25 * median_mm3:
            continue  # a body in line with the column
        box = vparts.boxes[v]
        own = verts[box] == v
        mm3 = float(own.sum() * np.prod(sp))
        dist, nearest = _nearest_chain(cv, is_chain, vparts.cells[v], np.nonzero(own), box, factors, coarse_mm)
        touching = float(dist.min()) <= P.attach_mm
        if not touching and band.holds(vparts.centres[v], P.front_mm, P.posterior_mm):
            # posterior elements hang on the body whose middle is nearest to their upper part; beyond the
            # chain's ends they are a vertebra of their own (its body cut by the field of view)
            upper = (box[1].start + 0.25 * (box[1].stop - box[1].start)) * sp[1]
            target = min(heights, key=lambda c: abs(heights[c] - upper), default=None)
            if target is not None and abs(heights[target] - upper) <= 0.75 * tall:
                verts[box][own] = target
                records.append(record("reassigned", "vertebra", v, vparts, mm3, to=[int(target)], reason="posterior element at the height of a chain body"))
            continue
        verts[box][own] = nearest if touching else 0
        if touching:
            records.append(record("reassigned", "vertebra", v, vparts, mm3, to=sorted(int(t) for t in np.unique(nearest))))
        else:
            records.append(record("dropped", "vertebra", v, vparts, mm3, reason="off the spine column"))
    # other discs: in line with the column they stay
    d_lut = np.arange(int(disc_lut.max(initial=0)) + 1, dtype=np.int64)
    for d in dparts.present():
        if d not in chain_d and not band.holds(dparts.centres[d], P.join_mm, P.join_mm, level=False):
            d_lut[d] = 0
            records.append(record("dropped", "disc", int(d), dparts, reason="off the spine column"))
    # discs touching the same bodies on the same sides, at the same height, are one disc
    sides: dict[tuple, int] = {}
    for d in sorted(chain_d, key=lambda d: -dparts.sizes[d]):
        key = (frozenset(contacts[d][0]), frozenset(contacts[d][1]))
        host = sides.get(key)
        if host is not None and (key[0] or key[1]) and abs(dparts.centres[d][1] - dparts.centres[host][1]) <= P.same_level_mm:
            d_lut[d] = host
            records.append(record("merged", "disc", int(d), dparts, into=host))
        else:
            sides.setdefault(key, int(d))
    deep = {d for d in chain_d if _depth(dparts, d, sp) >= P.disc_depth_mm}
    verts, merged = merge_and_split_bodies(verts, vparts, {d: contacts[d] for d in deep}, chain_v, band, sp, records)
    for d in dparts.present():  # a disc piece between two bodies now merged lies inside a body
        above, below = ({merged.get(v, v) for v in side} for side in contacts[d])
        if above & below and not contacts[d][0] & contacts[d][1] and d_lut[d]:
            d_lut[d] = 0
            records.append(record("dropped", "disc", int(d), dparts, reason="inside a body (between two pieces merged into one)"))
    disc_lut = d_lut.astype(disc_lut.dtype)[disc_lut]
    return verts, disc_lut


def _contacts(cv: np.ndarray, cd: np.ndarray, dparts: Parts, factors, coarse_mm: np.ndarray) -> dict[int, tuple[set, set]]:
    """disc id -> (vertebrae touching it from above, from below), on the coarse grid."""
    reach = [int(math.ceil(P.contact_mm / c)) + 1 for c in coarse_mm]
    out = {}
    for d in dparts.present():
        box = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(dparts.cells[d], reach, cd.shape))
        own = cd[box] == d
        above, below = set(), set()
        if own.any():
            near = distance_mm(own, coarse_mm) <= P.contact_mm
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
    """The largest canal component on the coarse grid if it is at least P.canal_length_mm long, else nothing."""
    ids = cc3d.connected_components(canal, connectivity=26)
    if not ids.any():
        return canal
    main = ids == np.bincount(ids.ravel())[1:].argmax() + 1
    rows = np.flatnonzero(main.any(axis=(0, 2)))
    return main if (rows[-1] - rows[0] + 1) * coarse_mm[1] >= P.canal_length_mm else np.zeros_like(canal)


def _on_canal(cv: np.ndarray, canal: np.ndarray, vparts: Parts, coarse_mm: np.ndarray) -> set:
    """Vertebra ids with cells within P.contact_mm of the canal and their centre in front of it (bodies,
    not the arches behind it)."""
    box = bbox(canal)
    if box is None:
        return set()
    profile = canal.any(axis=0)
    rows = np.flatnonzero(profile.any(axis=1))
    middle = np.array([np.flatnonzero(profile[r]).mean() for r in rows])

    def in_front(v: int) -> bool:
        return vparts.centres[v][2] < (np.interp(vparts.centres[v][1] / coarse_mm[1] - 0.5, rows, middle) + 0.5) * coarse_mm[2]

    reach = [int(math.ceil(P.contact_mm / c)) + 1 for c in coarse_mm]
    box = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(box, reach, canal.shape))
    near = distance_mm(canal[box], coarse_mm) <= P.contact_mm
    ids, counts = np.unique(cv[box][near], return_counts=True)
    return {int(i) for i, n in zip(ids, counts) if i and n >= 2 and in_front(int(i))}


def _near_canal(cd: np.ndarray, canal: np.ndarray, dparts: Parts, coarse_mm: np.ndarray) -> set:
    """Disc ids whose box grown by P.canal_mm holds canal (all discs where there is no canal)."""
    present = {int(d) for d in dparts.present()}
    if not canal.any():
        return present
    reach = [int(math.ceil(P.canal_mm / c)) for c in coarse_mm]
    return {d for d in present if canal[tuple(slice(max(b.start - r, 0), b.stop + r) for b, r in zip(dparts.cells[d], reach))].any()}


def _in_line(chain_d: set, dparts: Parts, near_canal: set) -> set:
    """The chain's discs that follow one spine: the longest path of discs, ordered by height, each
    P.step_mm to P.max_step_mm below the previous and at most P.line_mm off it anterior-posterior (then the
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
                   if P.step_mm <= rows[j] - rows[i] <= P.max_step_mm and abs(ap[j] - ap[i]) <= P.line_mm]
        best = max(options, default=(own, -1))
        score.append(best[0])
        previous.append(best[1])
    j = max(range(len(ds)), key=lambda j: score[j])
    path = []
    while j >= 0:
        path.append(j)
        j = previous[j]
    level = {ds[k] for k in range(len(ds)) for i in path if abs(rows[k] - rows[i]) <= P.same_level_mm and abs(ap[k] - ap[i]) <= P.line_mm}
    return level | {ds[i] for i in path}


def _trim(verts: np.ndarray, v: int, vparts: Parts, band: "Band", sp: np.ndarray, records: list[dict]) -> None:
    """Cut from chain vertebra v what lies more than P.trim_mm in front of the band or P.posterior_mm behind it."""
    box = vparts.boxes[v]
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


def _depth(dparts: Parts, d: int, sp: np.ndarray) -> float:
    """Anterior-posterior extent of disc d in mm."""
    return (dparts.boxes[d][2].stop - dparts.boxes[d][2].start) * sp[2]


def _links(contacts: dict[int, tuple[set, set]], discs, dparts: Parts, sp: np.ndarray) -> int:
    """Number of discs at least P.disc_depth_mm deep with a vertebra touching them from above and from below."""
    return sum(bool(contacts[d][0]) and bool(contacts[d][1]) and _depth(dparts, d, sp) >= P.disc_depth_mm for d in discs)


def _groups(contacts: dict[int, tuple[set, set]], dparts: Parts, near_canal: set, on_canal: set, sp: np.ndarray) -> list[tuple[set, set]]:
    """(vertebra ids, disc ids) of each group linked by contact (vertebrae touching the canal are linked
    through it), best first: most body-disc-body links (discs at least P.disc_depth_mm deep) plus vertebrae
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


def _nearest_chain(cv: np.ndarray, is_chain: np.ndarray, cells: tuple[slice, ...], voxels: tuple[np.ndarray, ...], box: tuple[slice, ...], factors, coarse_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For voxels (indices within the full-resolution box) of a piece: distance in mm to the nearest chain
    vertebra cell within P.attach_mm of the piece's coarse box (inf beyond), and that vertebra's id."""
    reach = [int(math.ceil(P.attach_mm / c)) + 1 for c in coarse_mm]
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

