"""Vertebral bodies of the chain: pieces of one body merged (one transitive label map), a body far taller than the others cut."""

from __future__ import annotations

import cc3d
import numpy as np

from .params import P
from .parts import Band

Profile = tuple[np.ndarray, int]  # voxels per row of a body (its part between the band's front and back lines), first row


class LabelMap:
    """Vertebra ids merged into one another: a merged id follows its host wherever the host goes."""

    def __init__(self, size: int):
        self.parent = np.arange(size)

    def find(self, v: int) -> int:
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = int(self.parent[v])
        return int(v)

    def join(self, v: int, into: int) -> None:
        self.parent[self.find(v)] = self.find(into)

    def lut(self) -> np.ndarray:
        """Every id -> the id it ends up as."""
        return np.array([self.find(v) for v in range(len(self.parent))], dtype=np.int64)


def body_profiles(verts: np.ndarray, ids, band: Band, sp: np.ndarray) -> dict[int, Profile]:
    """Body profile of each id of ``ids`` that has a body, from fresh bounding boxes."""
    boxes = cc3d.statistics(np.ascontiguousarray(verts))["bounding_boxes"]
    profiles = {int(v): body_profile(verts, int(v), boxes[v], band, sp) for v in ids if v < len(boxes) and boxes[v] is not None}
    return {v: p for v, p in profiles.items() if len(p[0])}


def body_profile(verts: np.ndarray, v: int, box: tuple[slice, ...], band: Band, sp: np.ndarray) -> Profile:
    """(voxels per row of vertebra v's body, i.e. its part between the discs' front and back lines; first row)."""
    rows_mm = np.arange(box[1].start, box[1].stop) * sp[1]
    lo = np.floor(band.line(band.front, rows_mm) / sp[2]).astype(int)
    hi = np.ceil(band.line(band.back, rows_mm) / sp[2]).astype(int)
    depth = np.arange(box[2].start, box[2].stop)
    inside = (depth[None, :] >= lo[:, None]) & (depth[None, :] < hi[:, None])
    counts = ((verts[box] == v) & inside[None]).sum(axis=(0, 2))
    hit = np.flatnonzero(counts)
    return (counts[hit[0] : hit[-1] + 1], box[1].start + int(hit[0])) if len(hit) else (np.zeros(0), 0)


def median_height(profiles: dict[int, Profile], sp: np.ndarray) -> float:
    """Median body height in mm (inf with fewer than three bodies: too few to judge by)."""
    return float(np.median([len(p) for p, _ in profiles.values()])) * sp[1] if len(profiles) >= 3 else np.inf


def merge_and_split_bodies(verts: np.ndarray, ids: int, profiles: dict[int, Profile], same_side: list[set], between: set, sp: np.ndarray,
                           records: list[dict]) -> tuple[np.ndarray, LabelMap]:
    """Merge chain bodies that are pieces of one: vertebrae touching one disc from the same side (``same_side``),
    and neighbours with no disc between them (pairs in ``between`` have one), when together they are not
    taller than a body should be; cut a body far taller than the median. ``ids``: how many vertebra ids there
    are (every id of ``verts`` is below it). Returns the ids and the label map."""
    merges = LabelMap(ids)
    median = median_height(profiles, sp)
    rows = {v: (first, first + len(p)) for v, (p, first) in profiles.items()}
    members = {v: {v} for v in profiles}

    def span(a: int, b: int) -> float:
        return (max(rows[a][1], rows[b][1]) - min(rows[a][0], rows[b][0])) * sp[1]

    def join(v: int, host: int, reason: str) -> None:
        v, host = merges.find(v), merges.find(host)
        rows[host] = (min(rows[v][0], rows[host][0]), max(rows[v][1], rows[host][1]))
        members[host] |= members.pop(v)
        merges.join(v, host)
        records.append({"action": "merged", "class": "vertebra", "id": int(v), "into": int(host), "reason": reason})

    def apart(a: int, b: int) -> bool:
        return any(frozenset((x, y)) in between for x in members[a] for y in members[b])

    for side in same_side:
        pieces = sorted({v for v in side if v in profiles}, key=lambda v: (-profiles[v][0].sum(), v))
        for v in pieces[1:]:
            a, host = merges.find(v), merges.find(pieces[0])
            if a != host and not apart(a, host) and span(a, host) <= P.same_body_ratio * median:
                join(a, host, "two pieces of one body touching one disc from the same side")
    ordered = sorted(members, key=lambda v: rows[v][0])
    i = 0
    while i + 1 < len(ordered):
        upper, lower = ordered[i], ordered[i + 1]
        if not apart(upper, lower) and span(upper, lower) <= P.merge_ratio * median:
            join(lower, upper, "two pieces of one body without a disc between them")
            ordered.pop(i + 1)
        else:
            i += 1
    for r in records:
        if r.get("action") == "merged" and r.get("class") == "vertebra" and "into" in r:
            r["into"] = merges.find(r["into"])
    verts = merges.lut().astype(verts.dtype)[verts]
    next_id = int(verts.max()) + 1
    for v in [v for v in members if len(members[v]) == 1 and len(profiles[v][0]) * sp[1] > P.split_ratio * median]:
        next_id = _cut_tall(verts, v, profiles[v], median, sp, next_id, records)
    return verts, merges


def _cut_tall(verts: np.ndarray, v: int, profile: Profile, median: float, sp: np.ndarray, next_id: int, records: list[dict]) -> int:
    """Cut body v into round(height / median) parts at its narrowest rows near equal divisions (in place); the next free id."""
    counts, first = profile
    height = len(counts) * sp[1]
    parts = int(round(height / median))
    window = max(1, len(counts) // (2 * parts))
    cuts = []
    for i in range(1, parts):
        target = int(round(i * len(counts) / parts))
        lo, hi = max(1, target - window), min(len(counts) - 1, target + window + 1)
        cuts.append(first + lo + int(np.argmin(counts[lo:hi])))
    rows = np.flatnonzero((verts == v).any(axis=(0, 2)))
    box = (slice(None), slice(int(rows[0]), int(rows[-1]) + 1), slice(None))
    own = verts[box] == v
    ids = np.concatenate([[v], np.arange(next_id, next_id + len(cuts))]).astype(verts.dtype)
    piece = ids[np.searchsorted(np.asarray(cuts), np.arange(box[1].start, box[1].stop), side="right")]
    verts[box][own] = np.broadcast_to(piece[None, :, None], own.shape)[own]
    records.append({"action": "split", "class": "vertebra", "id": int(v), "into": [int(i) for i in ids],
                    "reason": f"body {height:.0f} mm tall against a median of {median:.0f} mm"})
    return next_id + len(cuts)
