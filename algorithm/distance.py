"""Exact Euclidean distance maps in millimetres on anisotropic grids (SimpleITK's Maurer
transform): how far every cell lies from a mask, and which labelled region is nearest.

Post-processing needs nothing more of a distance transform; SimpleITK is loaded anyway to read
the image, so this spares the container scipy.ndimage, whose import alone takes twice as long
as the whole post-processing of a T2 series.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

TIE_MM = 1e-4  # distances this close are equal (Maurer's float32 maps are exact to about 1e-5 mm)


def distance_mm(features: np.ndarray, spacing) -> np.ndarray:
    """float32 distance in mm from every cell to the nearest True cell of ``features``, 0 on
    them, inf everywhere when there is none (``spacing``: mm per cell along each axis)."""
    if not features.any():
        return np.full(features.shape, np.inf, dtype=np.float32)
    image = sitk.GetImageFromArray(features.astype(np.uint8))
    image.SetSpacing([float(s) for s in reversed(spacing)])
    signed = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(signed), 0)


def nearest_label(labels: np.ndarray, spacing, points: np.ndarray, reach: np.ndarray | None = None) -> np.ndarray:
    """The label of the nearest labelled (non-zero) cell of ``labels`` to each point (N, ndim cell
    indices); 0 where nothing is labelled. Labels within TIE_MM of equally near count as equally
    near (float32 rounding), and of those the lowest wins.

    ``reach`` (mm, one per point, e.g. distance_mm(labels > 0) there) bounds the search: a label
    whose bounding box lies further from a point than its reach is not looked at for it. Each
    label's distance map is computed once, on the box holding the label and the points it may
    be nearest to.
    """
    points = np.asarray(points, dtype=np.intp).reshape(-1, labels.ndim)
    scale = np.asarray(spacing, dtype=float)
    best = np.full(len(points), np.inf, dtype=np.float32)
    nearest = np.zeros(len(points), dtype=labels.dtype)
    cells = np.argwhere(labels > 0)
    if not len(cells):
        return nearest
    values = labels[tuple(cells.T)]
    order = np.argsort(values, kind="stable")
    cells, values = cells[order], values[order]
    found, starts = np.unique(values, return_index=True)  # each label's bounding box: lo, hi
    for label, lo, hi in zip(found, np.minimum.reduceat(cells, starts), np.maximum.reduceat(cells, starts)):
        todo = np.ones(len(points), dtype=bool)
        if reach is not None:  # points whose reach (plus rounding) gets to the label's box
            gap = (np.maximum(lo - points, 0) + np.maximum(points - hi, 0)) * scale
            todo = np.sqrt((gap * gap).sum(axis=1)) <= np.asarray(reach) + TIE_MM
        if not todo.any():
            continue
        start = np.minimum(lo, points[todo].min(axis=0))
        stop = np.maximum(hi, points[todo].max(axis=0)) + 1
        box = tuple(slice(a, b) for a, b in zip(start, stop))
        dist = distance_mm(labels[box] == label, spacing)[tuple((points[todo] - start).T)]
        closer = dist < best[todo] - TIE_MM
        best[np.flatnonzero(todo)[closer]] = dist[closer]
        nearest[np.flatnonzero(todo)[closer]] = label
    return nearest
