"""Discs as plates: a plane fitted to each disc, and the pieces of one disc merged."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from .numbering import centroid_rows
from .params import P


@dataclass(frozen=True)
class DiscPlane:
    """A disc as a flat round plate in mm (crop voxel index x spacing).

    The plate is as wide in every direction as the disc is at its widest, so a disc that is
    partly missing (predicted as bone) still separates the bodies along its whole plane.
    """

    centre: np.ndarray
    normal: np.ndarray
    radius: float

    def band(self, points: np.ndarray, half_thickness: float, margin: float) -> np.ndarray:
        """True for points (N, 3) in mm within half_thickness of the plane and inside the rim + margin."""
        rel = points - self.centre
        height = rel @ self.normal
        inplane = (rel**2).sum(axis=1) - height**2
        return (np.abs(height) <= half_thickness) & (inplane <= (self.radius + margin) ** 2)


def _disc_plane(points: np.ndarray) -> DiscPlane:
    """Fit a plate to disc voxel positions (N, 3) in mm."""
    centre = points.mean(axis=0)
    rel = points - centre
    flat = np.ptp(points[:, 0]) == 0  # a disc seen in one sagittal slice: its normal lies in that slice
    _, vectors = np.linalg.eigh((rel.T @ rel)[1:, 1:] if flat else rel.T @ rel)  # ascending: the thinnest direction
    normal = np.concatenate([[0.0], vectors[:, 0]]) if flat else vectors[:, 0]
    return DiscPlane(centre, normal, float(np.sqrt(((rel**2).sum(axis=1) - (rel @ normal) ** 2).max())))


def merge_disc_pieces(discs: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, list[DiscPlane], tuple[np.ndarray, np.ndarray]]:
    """Join each disc piece whose centre lies in the band of a larger disc to it: (LUT of disc ids, the
    planes, (axis-1 centroid, voxel count) per disc id)."""
    stats = cc3d.statistics(discs)
    order = np.argsort(-np.asarray(stats["voxel_counts"])[1:], kind="stable") + 1
    target = np.arange(len(stats["voxel_counts"]))
    planes: dict[int, DiscPlane] = {}
    for d in order:
        box = stats["bounding_boxes"][d]
        points = (np.argwhere(discs[box] == d) + [s.start for s in box]) * spacing
        centre = points.mean(axis=0, keepdims=True)
        host = next((h for h, p in planes.items() if p.band(centre, P.cut_mm, P.footprint_mm)[0]), None)
        if host is None:
            planes[int(d)] = _disc_plane(points[:: max(1, len(points) // 20000)])
        else:
            target[d] = host
    return target.astype(np.uint32), list(planes.values()), centroid_rows(stats)

