"""The spine chain chosen: discs and vertebrae linked by contact, the best linked group, and its discs on one line."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from algorithm.distance import distance_mm

from .grid import bbox, cell_index, cell_mm, coarse_factors, grow_box, reach_cells, sample
from .params import P
from .parts import Band, Parts


@dataclass
class Column:
    """What the column work shares: coarse vertebra and disc ids, their statistics, contacts and the main canal."""

    sp: np.ndarray  # voxel spacing (mm)
    factors: tuple[int, ...]  # voxels per coarse cell
    cv: np.ndarray  # vertebra ids on the coarse grid
    vparts: Parts
    dparts: Parts
    contacts: dict[int, tuple[set, set]]  # disc id -> (vertebrae touching it from above, from below)
    canal: np.ndarray  # the main canal on the coarse grid (nothing if too short)
    near_canal: set  # disc ids near the canal
    on_canal: set  # vertebra ids touching the canal, in front of it

    @property
    def coarse_mm(self) -> np.ndarray:
        return self.sp * self.factors

    @classmethod
    def of(cls, verts: np.ndarray, cv: np.ndarray, discs: np.ndarray, disc_lut: np.ndarray, canal: np.ndarray, spacing) -> "Column":
        sp = np.asarray(spacing, dtype=float)
        factors = coarse_factors(spacing)
        coarse_mm = sp * factors
        cd = disc_lut[sample(discs, factors, cv.shape)]
        vparts, dparts = Parts.of(cv, factors, sp, verts.shape), Parts.of(cd, factors, sp, discs.shape)
        canal_c = _main_canal(sample(canal, factors, cv.shape), coarse_mm)
        contacts = _contacts(cv, cd, dparts, coarse_mm)
        return cls(sp, factors, cv, vparts, dparts, contacts, canal_c, _near_canal(canal_c, dparts, coarse_mm),
                   _on_canal(cv, canal_c, vparts, factors, sp))

    def band(self, chain_v: set, chain_d: set) -> Band | None:
        return Band.of(chain_v, chain_d, self.vparts, self.dparts, self.sp, self.canal, self.factors)

    def depth(self, d: int) -> float:
        """Anterior-posterior extent of disc d in mm."""
        return (self.dparts.boxes[d][2].stop - self.dparts.boxes[d][2].start) * self.sp[2]

    def links(self, discs) -> int:
        """Number of discs at least P.disc_depth_mm deep with a vertebra touching them from above and from below."""
        return sum(bool(self.contacts[d][0]) and bool(self.contacts[d][1]) and self.depth(d) >= P.disc_depth_mm for d in discs)


def choose_chain(col: Column) -> tuple[set, set, Band] | None:
    """(vertebra ids, disc ids, band) of the spine chain, or None where it is too short to judge the rest by.

    The chain is the linked group with the most links (_groups); groups continuing it across a gap join
    it, nearest first; its discs are then those on one spine (_in_line), its vertebrae those touching
    them or the canal. Fewer than P.min_links links, or no band to judge by, is no chain.
    """
    groups = _groups(col)
    if not groups:
        return None
    chain_v, chain_d = groups.pop(0)
    if col.links(chain_d) + len(chain_v & col.on_canal) < P.min_links:
        return None
    band = col.band(chain_v, chain_d)
    while band is not None and groups and chain_d:  # other groups continuing the column (a gap in the chain) join it, nearest first
        groups = [g for g in groups if g[1]]
        if not groups:
            break
        centres = col.dparts.centres
        gap = {i: min((abs(centres[d][1] - np.clip(centres[d][1], band.top, band.bottom)), d) for d in g[1]) for i, g in enumerate(groups)}
        i = min(gap, key=lambda i: gap[i][0])
        if not band.holds(centres[gap[i][1]], P.join_mm, P.join_mm, level=False):  # its disc nearest to the chain
            break
        chain_v, chain_d = chain_v | groups[i][0], chain_d | groups[i][1]
        band = col.band(chain_v, chain_d)
        groups.pop(i)
    in_line = _in_line(chain_d, col)
    if in_line != chain_d:  # discs off the chain's line (a stray glued to it through a vertebra) leave it
        chain_d = in_line
        chain_v = {v for d in chain_d for v in col.contacts[d][0] | col.contacts[d][1]} | (chain_v & col.on_canal)
        band = col.band(chain_v, chain_d)
    return None if band is None else (chain_v, chain_d, band)


def _contacts(cv: np.ndarray, cd: np.ndarray, dparts: Parts, coarse_mm: np.ndarray) -> dict[int, tuple[set, set]]:
    """disc id -> (vertebrae touching it from above, from below), on the coarse grid."""
    reach = reach_cells(P.contact_mm, coarse_mm)
    out = {}
    for d in dparts.present():
        box = grow_box(dparts.cells[d], reach, cd.shape)
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


def _on_canal(cv: np.ndarray, canal: np.ndarray, vparts: Parts, factors, sp: np.ndarray) -> set:
    """Vertebra ids with cells within P.contact_mm of the canal and their centre in front of it (bodies,
    not the arches behind it)."""
    box = bbox(canal)
    if box is None:
        return set()
    coarse_mm = sp * factors
    profile = canal.any(axis=0)
    rows = np.flatnonzero(profile.any(axis=1))
    middle = cell_mm(np.array([np.flatnonzero(profile[r]).mean() for r in rows]), factors[2], sp[2])

    def in_front(v: int) -> bool:
        return vparts.centres[v][2] < np.interp(cell_index(vparts.centres[v][1], factors[1], sp[1]), rows, middle)

    reach = reach_cells(P.contact_mm, coarse_mm)
    box = grow_box(box, reach, canal.shape)
    near = distance_mm(canal[box], coarse_mm) <= P.contact_mm
    ids, counts = np.unique(cv[box][near], return_counts=True)
    return {int(i) for i, n in zip(ids, counts) if i and n >= 2 and in_front(int(i))}


def _near_canal(canal: np.ndarray, dparts: Parts, coarse_mm: np.ndarray) -> set:
    """Disc ids whose box grown by P.canal_mm holds canal (all discs where there is no canal)."""
    present = {int(d) for d in dparts.present()}
    if not canal.any():
        return present
    reach = reach_cells(P.canal_mm, coarse_mm, margin=0)
    return {d for d in present if canal[grow_box(dparts.cells[d], reach, canal.shape)].any()}


def _in_line(chain_d: set, col: Column) -> set:
    """The chain's discs that follow one spine: the longest path of discs, ordered by height, each
    P.step_mm to P.max_step_mm below the previous and at most P.line_mm off it anterior-posterior (then the
    most near the canal, then the deepest discs); plus pieces at the same level as a disc of the path."""
    dparts = col.dparts
    ds = sorted(chain_d, key=lambda d: dparts.centres[d][1])
    if len(ds) < 3:
        return set(ds)
    rows, ap = dparts.centres[ds, 1], dparts.centres[ds, 2]
    score, previous = [], []
    for j in range(len(ds)):
        own = (1, int(ds[j] in col.near_canal), col.depth(ds[j]))
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


def _groups(col: Column) -> list[tuple[set, set]]:
    """(vertebra ids, disc ids) of each group linked by contact (vertebrae touching the canal are linked
    through it), best first: most body-disc-body links (discs at least P.disc_depth_mm deep) plus vertebrae
    touching the canal, then the largest sum of disc depths, then discs near the canal."""
    parent: dict[tuple, tuple] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for d, (above, below) in col.contacts.items():
        for v in above | below:
            parent[find(("v", v))] = find(("d", d))
    for v in col.on_canal:
        parent[find(("v", v))] = find(("c", 0))
    groups: dict[tuple, list] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)

    def rank(nodes):
        discs = [i for k, i in nodes if k == "d"]
        canal = sum(k == "v" and i in col.on_canal for k, i in nodes)
        return -(col.links(discs) + canal), -sum(col.depth(d) for d in discs), -any(d in col.near_canal for d in discs)

    return [({i for k, i in nodes if k == "v"}, {i for k, i in nodes if k == "d"}) for nodes in sorted(groups.values(), key=rank)]
