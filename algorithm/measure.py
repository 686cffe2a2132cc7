"""Per-level measurements of a SPIDER mask, in mm: vertebral body heights, disc heights and the
spinal canal's anteroposterior diameter at each disc.

Every structure is measured in its own mid-sagittal slice: the slice through the centroid of its
voxels along left-right. In that slice:

- the vertebral body is the vertebra's part anterior to the canal's front wall (row by row), its
  largest connected piece; a disc is its largest connected piece;
- the endplate direction u of a disc is its axis of largest extent (the principal axis of the piece
  in mm with the larger variance: a disc is far deeper than it is high, at any tilt); a vertebral
  body takes the mean direction of the discs nearest above and below it by position (a body is
  about as tall as it is deep, so its own principal axes are arbitrary), where it has none the
  perpendicular to the canal's local direction, and anterior-posterior where there is no canal
  either; the height direction v is perpendicular to u;
- the anterior, middle and posterior heights are the lengths of the piece along v on the lines at
  EDGE_FRACTION of its depth in from the anterior edge, at the middle of its depth, and at
  EDGE_FRACTION in from the posterior edge (depth = extent along u);
- the canal's AP diameter at a disc is the length of canal along u, on the line through the
  disc's centre, in the canal's own mid-sagittal slice over the disc's height.

A structure too small (under MIN_AREA_MM2 in its slice) or cut by the edge of the image, and a
disc without canal behind it, get None (a disc still lends its direction to its neighbours). Work is done on bounding boxes, so it takes milliseconds.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cc3d
import numpy as np

from algorithm.labels import CANAL_LABEL, DISC_OFFSET, PARTIAL_OFFSET, is_disc, is_vertebra

CANAL_REACH_MM = 20.0  # the canal's local direction: its centre line this far above and below a body
EDGE_FRACTION = 0.15  # anterior / posterior heights: this fraction of the depth in from each edge
MIN_AREA_MM2 = 20.0  # a structure smaller than this in its mid-sagittal slice is not measured
SAMPLES_PER_PIXEL = 4  # sampling density along a measuring line
HEIGHTS = ("anterior", "middle", "posterior")
CSV_FIELDS = ("label", "structure", "slice", "anterior_mm", "middle_mm", "posterior_mm", "canal_ap_mm")


@dataclass(frozen=True)
class Chord:
    """A measured length in one sagittal slice: end points as (S-I, A-P) mm in that slice."""

    start: tuple[float, float]
    end: tuple[float, float]

    @property
    def mm(self) -> float:
        return math.dist(self.start, self.end)


@dataclass(frozen=True)
class Level:
    """The measurements of one vertebra or disc (None where they could not be made)."""

    label: int
    structure: str  # "vertebra" or "disc"
    slice: int | None  # its mid-sagittal slice (canonical axis 0)
    heights: dict[str, Chord | None]  # anterior, middle, posterior
    canal: Chord | None = None  # discs only: canal AP diameter at this level
    direction: np.ndarray | None = field(default=None, compare=False, repr=False)  # endplate direction u (S-I, A-P)
    centre: np.ndarray | None = field(default=None, compare=False, repr=False)  # centroid in its slice (S-I, A-P mm)


def measure(labels: np.ndarray, spacing) -> list[Level]:
    """Measurements of every vertebra and disc of a canonical mask (axis 0 right->left, 1
    superior->inferior, 2 anterior->posterior), ordered by label value."""
    labels = np.asarray(labels)
    spacing = tuple(float(s) for s in spacing)
    boxes = _boxes(labels) if labels.size and labels.max() > 0 else []
    canal_box = boxes[CANAL_LABEL - 1] if len(boxes) >= CANAL_LABEL else None
    discs = {value: _measure_one(labels, spacing, value, box, canal_box)
             for value, box in enumerate(boxes, start=1) if box is not None and is_disc(value)}
    placed = [level for level in discs.values() if level.direction is not None]
    levels = []
    for value, box in enumerate(boxes, start=1):
        if box is not None and is_vertebra(value):
            row = _centre_row(labels[box] == value, box[1].start) * spacing[1]
            near = _neighbours(placed, row, (box[1].stop - box[1].start) * spacing[1])
            direction = _mean_direction(near) if near else _canal_direction(labels, spacing, canal_box, row)
            levels.append(_measure_one(labels, spacing, value, box, canal_box, direction))
        elif value in discs:
            levels.append(discs[value])
    return levels


def _centre_row(crop: np.ndarray, start: int) -> float:
    """Row (axis 1) of the centroid of a 3D boolean crop whose first row is ``start``."""
    profile = crop.sum(axis=(0, 2))
    return start + float((profile * np.arange(len(profile))).sum() / profile.sum())


def _neighbours(discs: list[Level], row: float, reach: float) -> list[np.ndarray]:
    """Directions of the disc nearest above and the one nearest below a body whose centre is at ``row`` mm,
    each within ``reach`` mm (by position: numbering conventions differ)."""
    above = [d for d in discs if row - reach <= d.centre[0] < row]
    below = [d for d in discs if row <= d.centre[0] <= row + reach]
    nearest = ([max(above, key=lambda d: d.centre[0])] if above else []) + ([min(below, key=lambda d: d.centre[0])] if below else [])
    return [d.direction for d in nearest]


def _canal_direction(labels: np.ndarray, spacing, canal_box, row: float) -> np.ndarray:
    """Endplate direction from the canal: perpendicular to its centre line within CANAL_REACH_MM of ``row``
    (all its slices together); anterior-posterior where there is too little canal."""
    if canal_box is not None:
        canal = (labels[canal_box] == CANAL_LABEL).any(axis=0)
        rows = np.flatnonzero(canal.any(axis=1))
        mm = (rows + canal_box[1].start) * spacing[1]
        sel = np.abs(mm - row) <= CANAL_REACH_MM
        if sel.sum() >= 3:
            middle = np.array([np.flatnonzero(canal[r]).mean() for r in rows[sel]]) * spacing[2]
            slope = np.polyfit(mm[sel], middle, 1)[0]  # A-P mm per S-I mm along the canal
            along = np.array([1.0, slope]) / math.hypot(1.0, slope)
            return np.array([-along[1], along[0]])
    return np.array([0.0, 1.0])


def _mean_direction(directions: list[np.ndarray]) -> np.ndarray:
    """Unit mean of unit (S-I, A-P) directions, each turned to point posterior."""
    mean = np.sum([d if d[1] >= 0 else -d for d in directions], axis=0)
    return mean / np.linalg.norm(mean)


def _measure_one(labels, spacing, value: int, box, canal_box, direction: np.ndarray | None = None) -> Level:
    """One structure's measurements; ``direction``: its endplate direction u, else (discs) its axis of largest extent."""
    structure = "vertebra" if is_vertebra(value) else "disc"
    s = _mid_slice(labels[box] == value, box[0].start)
    rows = box[1]
    piece = labels[s, rows] == value
    if structure == "vertebra":
        piece &= _anterior_to_canal(labels[s, rows] == CANAL_LABEL)
    piece = _largest(piece)
    points = (np.argwhere(piece) + (rows.start, 0)) * spacing[1:]
    if len(points) < 3:
        return Level(value, structure, s, dict.fromkeys(HEIGHTS))
    centre, u, v = _axes(points, direction)
    if piece.sum() * spacing[1] * spacing[2] < MIN_AREA_MM2 or _touches_edge(piece, rows, labels.shape[1]):
        return Level(value, structure, s, dict.fromkeys(HEIGHTS), direction=u, centre=centre)
    mask = np.zeros(labels.shape[1:], bool)
    mask[rows] = piece
    along = (points - centre) @ u
    half = 0.5 * (abs(u[0]) * spacing[1] + abs(u[1]) * spacing[2])
    lo, hi = along.min() - half, along.max() + half
    reach = float(np.abs((points - centre) @ v).max()) + max(spacing[1:])
    positions = {"anterior": lo + EDGE_FRACTION * (hi - lo), "middle": (lo + hi) / 2, "posterior": hi - EDGE_FRACTION * (hi - lo)}
    heights = {name: _chord(mask, spacing, centre + a * u, v, -reach, reach) for name, a in positions.items()}
    canal = None if structure == "vertebra" else _canal_at(labels, spacing, canal_box, rows, centre, u)
    return Level(value, structure, s, heights, canal, u, centre)


def _canal_at(labels, spacing, canal_box, rows: slice, centre: np.ndarray, u: np.ndarray) -> Chord | None:
    """The canal's AP diameter along u through a disc's centre, in the canal's own mid-sagittal slice over the disc's rows."""
    if canal_box is None:
        return None
    canal_rows = slice(max(rows.start, canal_box[1].start), min(rows.stop, canal_box[1].stop))
    if canal_rows.start >= canal_rows.stop:
        return None
    near = labels[canal_box[0], canal_rows] == CANAL_LABEL
    if not near.any():
        return None
    cs = _mid_slice(near, canal_box[0].start)
    far = float(np.hypot(*(np.array(labels.shape[1:]) * spacing[1:])))
    return _chord(labels[cs] == CANAL_LABEL, spacing, centre, u, 0.0, far, first=True)


def _mid_slice(crop: np.ndarray, start: int) -> int:
    """Sagittal slice through the centroid (along axis 0) of a 3D boolean crop."""
    profile = crop.sum(axis=(1, 2))
    return start + int(round(float((profile * np.arange(len(profile))).sum() / profile.sum())))


def _anterior_to_canal(canal: np.ndarray) -> np.ndarray:
    """True for pixels anterior to the canal's front wall, row by row (rows without canal take
    the front of the nearest row with canal); everything if these rows hold no canal."""
    has = canal.any(axis=1)
    if not has.any():
        return np.ones(canal.shape, bool)
    rows = np.flatnonzero(has)
    front = np.interp(np.arange(canal.shape[0]), rows, canal[rows].argmax(axis=1))
    return np.arange(canal.shape[1])[None, :] < front[:, None]


def _boxes(labels: np.ndarray) -> list[tuple[slice, ...] | None]:
    """Bounding box of each label value 1..max at index value - 1, None where the value is absent
    (what scipy.ndimage.find_objects gives)."""
    stats = cc3d.statistics(labels)
    return [box if count else None for box, count in zip(stats["bounding_boxes"][1:], stats["voxel_counts"][1:])]


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of a 2D mask."""
    return cc3d.largest_k(mask, k=1, connectivity=8) > 0


def _touches_edge(piece: np.ndarray, rows: slice, n_rows: int) -> bool:
    """True if a piece (rows ``rows`` of a slice) reaches the slice's border: cut by the field of view."""
    return bool(piece[:, 0].any() or piece[:, -1].any() or (rows.start == 0 and piece[0].any()) or (rows.stop == n_rows and piece[-1].any()))


def _axes(points: np.ndarray, direction: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid, endplate direction u (``direction``, else the axis of largest extent; pointing
    posterior) and height direction v (perpendicular, pointing inferior) of (S-I, A-P) mm points."""
    centre = points.mean(axis=0)
    if direction is None:
        _, vectors = np.linalg.eigh(np.cov((points - centre).T))
        direction = vectors[:, -1]  # ascending eigenvalues: the last is the axis of largest extent
    u = np.asarray(direction, dtype=float)
    u = u if u[1] >= 0 else -u
    v = np.array([u[1], -u[0]])
    return centre, u, v if v[0] >= 0 else -v


def _chord(mask: np.ndarray, spacing, origin: np.ndarray, direction: np.ndarray, t0: float, t1: float, first: bool = False) -> Chord | None:
    """The run of ``mask`` pixels along the line origin + t * direction (mm), t in [t0, t1],
    sampled at a quarter pixel with nearest-neighbour lookup: the longest run, or with ``first``
    the first one; None if the line meets no pixel of the mask."""
    step = min(spacing[1:]) / SAMPLES_PER_PIXEL
    t = np.arange(t0, t1 + step / 2, step)
    pts = origin[None, :] + t[:, None] * direction[None, :]
    idx = np.rint(pts / np.asarray(spacing[1:])).astype(int)
    inside = np.all((idx >= 0) & (idx < mask.shape), axis=1)
    hit = np.zeros(len(t), bool)
    hit[inside] = mask[idx[inside, 0], idx[inside, 1]]
    if not hit.any():
        return None
    edges = np.diff(np.concatenate([[0], hit.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = 0 if first else int(np.argmax(stops - starts))
    a, b = t[starts[k]] - step / 2, t[stops[k] - 1] + step / 2
    return Chord(tuple(origin + a * direction), tuple(origin + b * direction))


def as_json(levels: list[Level]) -> dict:
    """The measurements as a JSON-ready dict (mm, 2 decimals, null where not measured)."""
    out: dict = {"unit": "mm", "edge_fraction": EDGE_FRACTION, "vertebrae": {}, "discs": {}}
    for level in levels:
        entry = {"slice": level.slice, **{name: _mm(chord) for name, chord in level.heights.items()}}
        if level.structure == "disc":
            entry["canal_ap_diameter"] = _mm(level.canal)
        out["vertebrae" if level.structure == "vertebra" else "discs"][str(level.label)] = entry
    return out


def write_csv(levels: list[Level], path: Path) -> Path:
    """One row per structure; empty cells where not measured."""
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for level in levels:
            canal = _mm(level.canal) if level.structure == "disc" else None
            row = [level.label, level.structure, level.slice, *(_mm(level.heights[h]) for h in HEIGHTS), canal]
            writer.writerow(["" if v is None else v for v in row])
    return Path(path)


def _mm(chord: Chord | None) -> float | None:
    return None if chord is None else round(chord.mm, 2)
