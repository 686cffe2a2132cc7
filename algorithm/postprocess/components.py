"""Connected components: the class map cleaned of small pieces, and fragments left by the splitting."""

from __future__ import annotations

import cc3d
import numpy as np

from algorithm.labels import CANAL, DISC, VERTEBRA

from .params import P


def clean(classes: np.ndarray, spacing, min_voxels: int, records: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class map -> (vertebra mask, disc component ids 1..n, canal mask) without small components.

    One multi-label connected-components pass (a component never mixes classes); canal pieces
    below P.canal_fraction of the largest canal piece, and pieces off its line (_canal_in_line), are
    dropped as well (recorded). Counting and relabelling touch only the foreground voxels.
    """
    ids, n = cc3d.connected_components(classes, connectivity=26, return_N=True)
    foreground = classes > 0
    fg_ids = ids[foreground]
    sizes = np.bincount(fg_ids, minlength=n + 1)
    kind = np.zeros(n + 1, dtype=np.uint8)
    kind[fg_ids] = classes[foreground]
    kept = sizes >= min_voxels
    canal = kept & (kind == CANAL)
    canal &= sizes >= P.canal_fraction * sizes[canal].max(initial=0)
    if canal.sum() > 1:
        canal = _canal_in_line(classes == CANAL, ids, canal, np.asarray(spacing, dtype=float), records)
    disc = kept & (kind == DISC)
    disc_lut = np.zeros(n + 1, dtype=np.uint32)
    disc_lut[disc] = np.arange(1, disc.sum() + 1)
    out = []
    for lut in (kept & (kind == VERTEBRA), disc_lut, canal):
        array = np.zeros(classes.shape, dtype=lut.dtype)
        array[foreground] = lut[fg_ids]
        out.append(array)
    return out[0], out[1], out[2]


def drop_fragments(ids: np.ndarray, min_voxels: int, kind: str, records: list[dict]) -> None:
    """Remove pieces of a structure smaller than min_voxels (cut off from it by the splitting) from an id map, in place."""
    pieces, n = cc3d.connected_components(ids, connectivity=26, return_N=True)
    foreground = ids > 0
    fg_pieces = pieces[foreground]
    small = np.bincount(fg_pieces, minlength=n + 1) < min_voxels
    small[0] = False
    if small.any():
        values = ids[foreground]
        values[small[fg_pieces]] = 0
        ids[foreground] = values
        records.append({"action": "dropped", "class": kind, "count": int(small.sum()), "reason": "pieces below the minimum component volume"})


def _canal_in_line(where: np.ndarray, ids: np.ndarray, candidates: np.ndarray, spacing: np.ndarray, records: list[dict]) -> np.ndarray:
    """The candidate canal components (boolean per id) in line with the largest one: each piece's centre
    within P.canal_line_mm of the largest's centre line at its height (anterior-posterior and left-right).
    A canal-labelled stray in front of the bodies is not the canal: it would cut every body in two."""
    voxels = np.nonzero(where)
    component = ids[where]
    keep = candidates[component]
    voxels, component = [v[keep] for v in voxels], component[keep]
    sizes = np.bincount(component)
    main = int(sizes.argmax())
    own = component == main
    rows = np.bincount(voxels[1][own], minlength=where.shape[1])
    hit = np.flatnonzero(rows)
    line = [np.bincount(voxels[1][own], weights=voxels[a][own], minlength=where.shape[1])[hit] / rows[hit] for a in (0, 2)]
    out = np.zeros_like(candidates)
    out[main] = True
    for c in np.flatnonzero(sizes):
        if c == main:
            continue
        sel = component == c
        centre = np.array([v[sel].mean() for v in voxels])
        expected = [np.interp(centre[1], hit, values) for values in line]
        off = max(abs(centre[0] - expected[0]) * spacing[0], abs(centre[2] - expected[1]) * spacing[2])
        if off <= P.canal_line_mm:
            out[c] = True
        else:
            records.append({"action": "dropped", "class": "canal", "volume_ml": round(float(sizes[c] * np.prod(spacing)) / 1000, 3),
                            "centre_mm": [round(float(x), 1) for x in centre * spacing], "reason": "off the line of the main canal"})
    return out
