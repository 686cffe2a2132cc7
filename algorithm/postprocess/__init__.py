"""Post-processing: the network's class map -> a SPIDER instance mask, in steps of one job each.

All on the bounding box of the foreground, in mm; the tuning constants are in params.P.
1. components: per class, 3D components below `config.min_component_mm3` go; canal pieces off the
   main canal's line go (a canal-labelled stray in front of the bodies would cut them in two);
2. discs: each disc a plate (its normal from its sagittal extent where it is seen in a few thick
   slices); a small piece in the plane of a larger disc joins it;
3. split: the vertebra mask split into vertebrae on a ~1.5 mm grid (grid.py): body cores in front of
   the main canal's front wall, cut along every disc plane, grown through the mask by geodesic
   distance; seedless pieces attach to the nearest vertebra or behind the canal;
4. column: the spine chain (chain.py: discs and vertebrae linked by contact, the best group, its
   discs on one line), then anatomy's rules: what hangs far off a chain vertebra is trimmed; below
   the lowest disc lies the sacrum (dropped) unless it is one vertebra cut by the field of view; a
   piece behind the canal (an arch) joins the body at its height and is never a vertebra of its
   own; pieces off the column go; disc pieces of one level merge; bodies merge and split through
   one transitive label map (bodies.py);
5. components: pieces of a structure below the minimum volume left by the splitting go, before
   numbering, so that no number is skipped;
6. numbering: vertebra 1 is the lowest; disc 200+k lies between vertebrae k and k+1; with
   `config.partial_vertebrae`, a vertebra cut by the superior or inferior edge of the field of view
   becomes 100+k (off by default: every released mask seen labels such vertebrae 1-25).

`postprocess(..., log=[])` appends one record per action (dropped, trimmed, reassigned, merged,
split, partial) to the list, for the QC JSON (records.py).
"""

from __future__ import annotations

import math

import numpy as np

from algorithm.config import Config
from algorithm.labels import CANAL_LABEL

from .column import fit_column
from .components import clean, drop_fragments
from .discs import merge_disc_pieces
from .grid import bbox
from .numbering import mark_partial, number_structures
from .records import final_record
from .split import split_vertebrae


def postprocess(classes: np.ndarray, spacing: tuple[float, float, float], config: Config, log: list[dict] | None = None) -> np.ndarray:
    """Canonical uint8 class map (0 bg, 1 vertebra, 2 disc, 3 canal) -> int16 SPIDER instance mask.

    With ``log``, one record per post-processing action is appended to it (see fit_column);
    positions are mm from the first voxel of the canonical array.
    """
    classes = np.asarray(classes)
    out = np.zeros(classes.shape, dtype=np.int16)
    box = bbox(classes > 0)
    if box is None:
        return out
    sub = np.ascontiguousarray(classes[box])
    spacing = tuple(float(s) for s in spacing)
    min_voxels = max(1, math.ceil(config.min_component_mm3 / math.prod(spacing)))
    records: list[dict] = []
    verts, discs, canal = clean(sub, spacing, min_voxels, records)
    disc_lut, planes = merge_disc_pieces(discs, spacing)  # disc ids stay raw components until the column is fitted
    verts, coarse = split_vertebrae(verts, planes, canal, spacing)
    edges = tuple((b.start == 0, b.stop == n) for b, n in zip(box, classes.shape))  # where the crop meets the field of view's edge
    verts, disc_lut = fit_column(verts, coarse, discs, disc_lut, canal, spacing, edges, records)
    discs = disc_lut[discs]
    drop_fragments(verts, min_voxels, "vertebra", records)
    drop_fragments(discs, min_voxels, "disc", records)
    labels = number_structures(verts, discs, spacing[1])
    if config.partial_vertebrae:
        mark_partial(labels, box, classes.shape[1], records)
    out[box] = labels
    out[box][canal] = CANAL_LABEL
    if log is not None:
        offset = np.array([s.start for s in box]) * spacing
        log.extend(final_record(r, labels, verts, discs, offset) for r in records)
    return out

