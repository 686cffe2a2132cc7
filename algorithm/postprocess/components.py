"""Connected components: the class map cleaned of small pieces, and fragments left by the splitting."""

from __future__ import annotations

import cc3d
import numpy as np

from algorithm.labels import CANAL, DISC, VERTEBRA

from .params import P


def clean(classes: np.ndarray, min_voxels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class map -> (vertebra mask, disc component ids 1..n, canal mask) without small components.

    One multi-label connected-components pass (a component never mixes classes); canal pieces
    below P.canal_fraction of the largest canal piece are dropped as well. Counting and relabelling
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
    canal &= sizes >= P.canal_fraction * sizes[canal].max(initial=0)
    disc = kept & (kind == DISC)
    disc_lut = np.zeros(n + 1, dtype=np.uint32)
    disc_lut[disc] = np.arange(1, disc.sum() + 1)
    out = []
    for lut in (kept & (kind == VERTEBRA), disc_lut, canal):
        array = np.zeros(classes.shape, dtype=lut.dtype)
        array[foreground] = lut[fg_ids]
        out.append(array)
    return out[0], out[1], out[2]


def drop_fragments(labels: np.ndarray, min_voxels: int, records: list[dict]) -> None:
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

