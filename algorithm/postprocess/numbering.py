"""SPIDER numbering: vertebrae bottom-up, disc 200+k between vertebrae k and k+1."""

from __future__ import annotations

import cc3d
import numpy as np

from algorithm.labels import DISC_OFFSET, MAX_INDEX, PARTIAL_OFFSET

from .params import P


def number_structures(verts: np.ndarray, discs: np.ndarray, row_mm: float = 1.0) -> np.ndarray:
    """Vertebra ids and disc ids (disjoint; pieces of one disc share an id) -> int16 SPIDER labels, bottom-up.

    Vertebrae are ordered by their superior-inferior centroid (canonical axis 1; ``row_mm`` mm a row):
    1 = lowest. A disc takes 200 + k of the nearest vertebra k above it, discs above every vertebra
    continue the count upwards: disc 200+k lies between vertebrae k and k+1 by position. Where a larger
    disc holds that number already, a piece at its level (_same_level) is part of it (the same number);
    one further off takes the next free number. Beyond 25 vertebrae or discs the smallest are dropped.
    """
    v_rows, v_sizes, _ = _rows_and_sizes(verts)
    d_rows, d_sizes, d_spans = _rows_and_sizes(discs)
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
    d_lut = np.zeros(len(d_sizes), dtype=np.int16)
    pending = []
    for d, k in sorted(zip(d_ids, wanted), key=lambda dk: (-d_sizes[dk[0]], d_rows[dk[0]])):  # the largest (then highest) disc first
        if k > MAX_INDEX:
            continue
        if k not in claims:
            claims[k] = int(d)
        elif not _same_level(d_rows, d_spans, d, claims[k], row_mm):
            pending.append(int(d))
            continue
        d_lut[d] = DISC_OFFSET + k
    free = [k for k in range(max(claims, default=0) + 1, MAX_INDEX + 1)]
    free += [k for k in range(1, MAX_INDEX + 1) if k not in claims and k not in free]
    for k, d in zip(free, sorted(pending, key=lambda d: -d_rows[d])):
        d_lut[d] = DISC_OFFSET + k
    return v_lut[verts] + d_lut[discs]


def _rows_and_sizes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Axis-1 centroid, voxel count and axis-1 span (a slice, None where absent) per id (index = id)."""
    stats = cc3d.statistics(np.ascontiguousarray(ids))
    sizes = np.asarray(stats["voxel_counts"]).astype(np.int64)
    sizes[0] = 0
    rows = np.nan_to_num(np.asarray(stats["centroids"], dtype=float).reshape(-1, 3)[:, 1])
    return rows, sizes, [box[1] if box is not None else None for box in stats["bounding_boxes"]]


def _same_level(rows: np.ndarray, spans: list, a: int, b: int, row_mm: float) -> bool:
    """True if discs a and b overlap in height (pieces of one tilted disc) or their centres lie within P.same_level_mm."""
    overlap = min(spans[a].stop, spans[b].stop) > max(spans[a].start, spans[b].start)
    return overlap or abs(rows[a] - rows[b]) * row_mm <= P.same_level_mm


def _keep_largest(ids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """At most MAX_INDEX ids, the largest ones."""
    return np.sort(ids[np.argsort(-sizes[ids], kind="stable")][:MAX_INDEX])


def mark_partial(labels: np.ndarray, box: tuple[slice, ...], rows: int, records: list[dict]) -> None:
    """Vertebrae reaching the first or last row of the volume (cut by the field of view) -> 100+k, in place."""
    edges = [i for i, at in ((0, box[1].start == 0), (-1, box[1].stop == rows)) if at]
    for edge in edges:
        cut = np.unique(labels[:, edge][(labels[:, edge] >= 1) & (labels[:, edge] <= MAX_INDEX)])
        for value in cut:
            labels[labels == value] = PARTIAL_OFFSET + value
            records.append({"action": "partial", "class": "vertebra", "label": int(PARTIAL_OFFSET + value), "reason": "cut by the " + ("superior" if edge == 0 else "inferior") + " edge of the field of view"})

