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
    disc_lut, planes, disc_stats = merge_disc_pieces(discs, spacing)  # disc ids stay raw components; their LUT is applied once
    verts, coarse = split_vertebrae(verts, planes, canal, spacing)
    verts, disc_lut = fit_column(verts, coarse, discs, disc_lut, canal, spacing, box[1].stop == classes.shape[1], records)
    labels = number_structures(verts, discs, disc_lut, disc_stats)
    drop_fragments(labels, min_voxels, records)
    if config.partial_vertebrae:
        mark_partial(labels, box, classes.shape[1], records)
    out[box] = labels
    out[box][canal] = CANAL_LABEL
    if log is not None:
        offset = np.array([s.start for s in box]) * spacing
        log.extend(final_record(r, labels, verts, discs, disc_lut, offset) for r in records)
    return out

