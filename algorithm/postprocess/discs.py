"""Discs as plates: a plane fitted to each disc, and the pieces of one disc merged."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

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


def disc_plane(points: np.ndarray) -> DiscPlane:
    """Fit a plate to disc voxel positions (N, 3) in mm.

    A disc's left-right axis always lies in its plane (discs are wide and never tilt 45 degrees to
    the side). Seen over less left-right than front-back (a few thick slices), its left-right extent
    says nothing of its tilt: the normal is fitted in the sagittal plane alone, perpendicular to the
    disc's axis of largest extent there. Otherwise the normal is the thinner of the two principal axes
    beside the one closest to left-right.
    """
    centre = points.mean(axis=0)
    rel = points - centre
    scatter = rel.T @ rel
    if np.ptp(points[:, 0]) < np.ptp(points[:, 2]):
        _, vectors = np.linalg.eigh(scatter[1:, 1:])  # ascending: the thinnest sagittal direction first
        normal = np.concatenate([[0.0], vectors[:, 0]])
    else:
        _, vectors = np.linalg.eigh(scatter)
        side = int(np.argmax(np.abs(vectors[0])))
        normal = vectors[:, min(set(range(3)) - {side})]  # the smaller eigenvalue of the two left
    return DiscPlane(centre, normal, float(np.sqrt(((rel**2).sum(axis=1) - (rel @ normal) ** 2).max())))


def merge_disc_pieces(discs: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, list[DiscPlane]]:
    """Join each disc piece whose centre lies in the band of a larger disc to it: (LUT of disc ids, the planes)."""
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
            planes[int(d)] = disc_plane(points[:: max(1, len(points) // 20000)])
        else:
            target[d] = host
    return target.astype(np.uint32), list(planes.values())

