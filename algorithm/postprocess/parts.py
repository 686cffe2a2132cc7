"""Per-piece statistics on the coarse grid, and the band along the spine where the chain lies."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from .grid import cell_mm
from .params import P


@dataclass
class Parts:
    """Per-id statistics (index = id) measured on the coarse grid: volume (mm3), centre (mm), box of
    coarse cells and the box of full-resolution voxels it covers."""

    sizes: np.ndarray
    centres: np.ndarray
    cells: list
    boxes: list

    @classmethod
    def of(cls, coarse: np.ndarray, factors: tuple[int, ...], spacing: np.ndarray, shape: tuple[int, ...]) -> "Parts":
        stats = cc3d.statistics(np.ascontiguousarray(coarse))
        sizes = np.asarray(stats["voxel_counts"]).astype(float) * float(np.prod(spacing * factors))
        sizes[0] = 0
        centres = cell_mm(np.nan_to_num(np.asarray(stats["centroids"], dtype=float).reshape(-1, 3)), factors, spacing)
        cells = list(stats["bounding_boxes"])
        boxes = [tuple(slice(c.start * f, min(c.stop * f, n)) for c, f, n in zip(box, factors, shape)) if box else None for box in cells]
        return cls(sizes, centres, cells, boxes)

    def present(self) -> np.ndarray:
        return np.flatnonzero(self.sizes)


@dataclass
class Band:
    """Where the column's bodies lie, in mm: the discs' front and back lines along the rows (each
    disc's centre -/+ half the median disc depth), their left-right midline, the chain's top and bottom."""

    rows: np.ndarray
    front: np.ndarray
    back: np.ndarray
    midline: float
    top: float
    bottom: float

    @classmethod
    def of(cls, chain_v: set, chain_d: set, vparts: Parts, dparts: Parts, sp: np.ndarray, canal: np.ndarray, factors) -> "Band | None":
        """From two or more discs; else from the canal (bodies lie P.body_depth_mm in front of its front wall); else None."""
        spans = [vparts.boxes[v][1] for v in chain_v] + [dparts.boxes[d][1] for d in chain_d]
        top, bottom = min(r.start for r in spans) * sp[1], max(r.stop for r in spans) * sp[1]
        if len(chain_d) >= 2:
            d_ids = np.array(sorted(chain_d))
            rows = dparts.centres[d_ids, 1]
            order = np.argsort(rows)
            half = float(np.median([dparts.boxes[d][2].stop - dparts.boxes[d][2].start for d in d_ids])) * sp[2] / 2
            front = dparts.centres[d_ids, 2][order] - half  # the median depth about each disc's centre: robust
            back = dparts.centres[d_ids, 2][order] + half  # to a disc merged with a stray piece
            midline = float(np.average(dparts.centres[d_ids, 0], weights=dparts.sizes[d_ids]))
            return cls(rows[order], front, back, midline, top, bottom)
        if not canal.any():
            return None
        profile = canal.any(axis=0)
        rows = np.flatnonzero(profile.any(axis=1))
        wall = cell_mm(profile[rows].argmax(axis=1), factors[2], sp[2])
        midline = float(cell_mm(np.flatnonzero(canal.any(axis=(1, 2))).mean(), factors[0], sp[0]))
        return cls(cell_mm(rows, factors[1], sp[1]), wall - P.body_depth_mm, wall, midline, top, bottom)

    def line(self, values: np.ndarray, row: np.ndarray) -> np.ndarray:
        """A line (front or back) at rows in mm: interpolated between discs, level beyond the end ones."""
        return np.interp(row, self.rows, values)

    def slack(self, row):
        """How far the spine may have turned front or back at rows (mm) beyond the chain's end discs (mm)."""
        return np.minimum(P.line_mm, P.cone * np.maximum(np.maximum(self.rows[0] - row, row - self.rows[-1]), 0.0))

    def holds(self, point: np.ndarray, ahead: float, behind: float, level: bool = True) -> bool:
        """True if a point (mm) lies at the chain's height (P.level_mm margin; any height without ``level``),
        near its midline, and between ``ahead`` mm in front of the front line and ``behind`` mm behind the back line."""
        if level and not self.top - P.level_mm <= point[1] <= self.bottom + P.level_mm:
            return False
        if abs(point[0] - self.midline) > P.lateral_mm:
            return False
        slack = self.slack(point[1])
        return self.line(self.front, point[1]) - ahead - slack <= point[2] <= self.line(self.back, point[1]) + behind + slack

