"""Vertebral bodies of the chain: pieces of one body merged, a body far taller than the others cut."""

from __future__ import annotations

import numpy as np

from .params import P
from .parts import Band, Parts


def merge_and_split_bodies(verts: np.ndarray, vparts: Parts, contacts: dict, chain_v: set, band: Band, sp: np.ndarray, records: list[dict]) -> tuple[np.ndarray, dict[int, int]]:
    """Merge vertebrae touching one disc (of ``contacts``) from the same side (pieces of one body), and a
    short chain body into its neighbour when no disc lies between them; cut a body far taller than the
    median. Returns the ids and {merged id: id it joined}."""
    lut = np.arange(int(verts.max()) + 1)
    merged: set = set()
    profiles = {v: body_profile(verts, v, vparts.boxes[v], band, sp) for v in chain_v}
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
                    and span(v, host) <= P.same_body_ratio * median):
                lut[v] = host
                merged |= {v, host}
                records.append({"action": "merged", "class": "vertebra", "id": int(v), "into": int(host), "reason": "two pieces of one body touching one disc from the same side"})
    ordered = sorted((v for v in heights if lut[v] == v), key=lambda v: profiles[v][1])
    for upper, lower in zip(ordered, ordered[1:]):
        if upper in merged or frozenset((upper, lower)) in between or upper == ordered[0] or lower == ordered[-1]:
            continue  # the end bodies may be short because the field of view cuts them
        if span(upper, lower) <= P.merge_ratio * median and min(heights[upper], heights[lower]) < P.short_ratio * median:
            lut[lower] = upper
            merged |= {upper, lower}
            records.append({"action": "merged", "class": "vertebra", "id": int(lower), "into": int(upper), "reason": "a short body and its neighbour without a disc between them"})
    if merged:
        verts = lut.astype(verts.dtype)[verts]
    joined = {int(v): int(lut[v]) for v in merged if lut[v] != v}
    next_id = int(verts.max()) + 1
    for v in heights:
        if v in merged or heights[v] <= P.split_ratio * median:
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


def body_profile(verts: np.ndarray, v: int, box: tuple[slice, ...], band: Band, sp: np.ndarray) -> tuple[np.ndarray, int]:
    """(voxels per row of vertebra v's body, i.e. its part between the discs' front and back lines; first row)."""
    rows_mm = np.arange(box[1].start, box[1].stop) * sp[1]
    lo = np.floor(band.line(band.front, rows_mm) / sp[2]).astype(int)
    hi = np.ceil(band.line(band.back, rows_mm) / sp[2]).astype(int)
    depth = np.arange(box[2].start, box[2].stop)
    inside = (depth[None, :] >= lo[:, None]) & (depth[None, :] < hi[:, None])
    counts = ((verts[box] == v) & inside[None]).sum(axis=(0, 2))
    hit = np.flatnonzero(counts)
    return (counts[hit[0] : hit[-1] + 1], box[1].start + int(hit[0])) if len(hit) else (np.zeros(0), 0)

