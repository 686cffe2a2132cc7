"""Synthetic sagittal lumbar spine MR volumes with SPIDER masks, on any ITK grid.

The anatomy (a lordotic column of vertebrae with posterior elements, discs between them, a
sacrum below, the spinal canal behind them, back muscles, fat, psoas, vessels and abdomen) is
built in physical LPS space around the grid's centre, so it looks the same whatever the axis
order or flips of the grid. Rendering happens on the canonical array (see geometry.py), each
structure only inside its bounding box, so a 120 x 640 x 512 volume takes a few seconds.

Labels follow SPIDER: vertebrae 1.. bottom-up (1 = lowest visible), disc 200+k directly below
vertebra k, spinal canal 100; the sacrum is bone in the image but background in the mask.
"""

from __future__ import annotations

import argparse
import csv
import math
import uuid
from dataclasses import dataclass
from itertools import permutations, product
from pathlib import Path

import numpy as np

from algorithm.geometry import Orientation, orientation
from algorithm.labels import CANAL_LABEL, DISC_OFFSET, MAX_INDEX

# The three benchmark geometries, ITK (i, j, k) order, sagittal axis first, identity direction.
GEOMETRIES: dict[str, dict] = {
    "t2": {"size": (15, 384, 384), "spacing": (4.4, 0.73, 0.73)},
    "t1": {"size": (27, 448, 600), "spacing": (3.3, 0.63, 0.47)},
    "t2_SPACE": {"size": (120, 640, 512), "spacing": (0.9, 0.47, 0.47)},
}

# Relative signal of each tissue: (T1, T2). Air is 0.
TISSUES = {
    "fat": (0.90, 0.70),
    "muscle": (0.30, 0.22),
    "soft": (0.32, 0.26),
    "vessel": (0.06, 0.05),
    "csf": (0.14, 1.00),
    "marrow": (0.66, 0.42),
    "cortex": (0.10, 0.10),
    "posterior": (0.55, 0.34),
    "annulus": (0.27, 0.28),
    "nucleus": (0.33, 0.88),
}
EDGE_MM = 1.0  # width of the soft transition at structure boundaries


@dataclass(frozen=True)
class Grid:
    """A canonical render grid: the LPS point of index (0, 0, 0) and the mm step of each axis."""

    shape: tuple[int, int, int]
    origin: np.ndarray  # (3,) LPS mm
    steps: np.ndarray  # (3, 3): column c = LPS mm vector of one step along canonical axis c

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.steps, axis=0)


@dataclass(frozen=True)
class Part:
    """One rigid piece of the spine: centre (u, s, t) mm in the spine frame, sagittal tilt
    (radians), half sizes (L-R, S-I, A-P) in mm."""

    centre: tuple[float, float, float]
    tilt: float
    half: tuple[float, float, float]


@dataclass(frozen=True)
class Spine:
    """The anatomy in the spine frame (u left, s superior, t posterior of ``centre``, mm)."""

    centre: np.ndarray  # LPS mm
    curve_s: np.ndarray  # dense samples of the body-centre line: s ...
    curve_t: np.ndarray  # ... its A-P position t(s)
    curve_u: np.ndarray  # ... and its L-R position u(s)
    vertebrae: list[Part]  # bottom-up
    discs: list[Part]  # discs[k] directly below vertebrae[k]
    sacrum: Part
    degeneration: np.ndarray  # per disc, 0 = healthy bright nucleus (T2), 1 = dark
    canal_half: tuple[float, float]  # L-R, A-P half sizes
    canal_offset: float  # A-P distance of the canal centre behind the body centre line
    back: float  # skin behind the body centre line
    fat: float  # subcutaneous fat thickness
    coil_mm: float  # decay length of the posterior coil's sensitivity


def canonical_grid(size, spacing, direction, origin) -> tuple[Grid, Orientation]:
    """The canonical grid of an ITK grid and the orientation that maps between the two."""
    d = np.asarray(direction, float).reshape(3, 3)
    orient = orientation(d.ravel(), spacing)
    start = np.asarray(origin, float).copy()
    steps, shape = np.zeros((3, 3)), []
    for c, (axis, flip) in enumerate(zip(orient.axes, orient.flips)):
        itk = 2 - axis
        step = d[:, itk] * spacing[itk]
        if flip:
            start += step * (size[itk] - 1)
            step = -step
        steps[:, c] = step
        shape.append(int(size[itk]))
    return Grid(tuple(shape), start, steps), orient


def _frame(grid: Grid, centre: np.ndarray, lo=(0, 0, 0), hi=None) -> list[np.ndarray]:
    """(u, s, t) mm of the voxels in the index box [lo, hi) relative to ``centre`` (left,
    superior, posterior), as float32 arrays that broadcast to the box."""
    hi = grid.shape if hi is None else hi
    out = []
    for phys in (0, 2, 1):  # LPS x = left, z = superior, y = posterior
        value = np.full((1, 1, 1), grid.origin[phys] - centre[phys])
        for c in range(3):
            step = grid.steps[phys, c]
            if abs(step) > 1e-6:
                shape = [1, 1, 1]
                shape[c] = hi[c] - lo[c]
                value = value + (step * np.arange(lo[c], hi[c])).reshape(shape)
        out.append(value.astype(np.float32))
    return out


def _box(grid: Grid, centre: np.ndarray, lo_ust, hi_ust):
    """Index box [lo, hi) of the canonical grid covering a spine-frame box; None if outside."""
    inverse = np.linalg.inv(grid.steps)
    corners = []
    for u, s, t in product(*zip(lo_ust, hi_ust)):
        corners.append(inverse @ (centre + np.array([u, t, s]) - grid.origin))
    corners = np.array(corners)
    lo = np.clip(np.floor(corners.min(0)).astype(int), 0, grid.shape)
    hi = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, grid.shape)
    return (tuple(lo), tuple(hi)) if np.all(hi > lo) else None


def _local(u, s, t, part: Part):
    """Coordinates relative to a part's centre in its tilted frame (u, s', t')."""
    uc, sc, tc = part.centre
    ds, dt = s - sc, t - tc
    cos, sin = math.cos(part.tilt), math.sin(part.tilt)
    return u - uc, ds * cos + dt * sin, dt * cos - ds * sin


def _rounded_cylinder(u, s, t, half, waist=0.0):
    """Approximate signed distance (mm) to a vertical elliptic cylinder with rounded end plates
    (``waist``: relative narrowing at mid-height), and the squared normalised radius of the
    cross-section (0 on the axis, 1 on the wall)."""
    hu, hs, ht = half
    z2 = (s * (1.0 / hs)) ** 2
    rho2 = (u * (1.0 / hu)) ** 2 + (t * (1.0 / ht)) ** 2
    if waist:
        rho2 = rho2 / (1.0 - waist * (1.0 - np.minimum(z2, 1.0))) ** 2
    f = np.sqrt(np.cbrt(rho2 * rho2 * rho2 + z2 * z2 * z2))  # (rho^6 + z^6)^(1/6)
    return (f - 1.0) * float(min(half)), rho2


def _capsule(u, s, t, a, b, radii):
    """Approximate signed distance (mm) to a capsule from ``a`` to ``b`` (u, s, t) with
    elliptical cross-section ``radii`` (u, s, t half sizes)."""
    p = [c * (1.0 / r) for c, r in zip((u, s, t), radii)]
    a = [float(x / r) for x, r in zip(a, radii)]
    ab = [float(y / r) - x for y, r, x in zip(b, radii, a)]
    h = np.clip(sum((pc - ac) * abc for pc, ac, abc in zip(p, a, ab)) * (1.0 / sum(x * x for x in ab)), 0.0, 1.0)
    dist = np.sqrt(sum((pc - ac - h * abc) ** 2 for pc, ac, abc in zip(p, a, ab)))
    return (dist - 1.0) * float(min(radii))


def _posterior_elements(body: Part) -> list[tuple[tuple, tuple, tuple]]:
    """(start, end, radii) capsules, in the body's local frame, of a vertebra's pedicles,
    articular pillars, transverse processes, laminae and spinous process."""
    hu, hs, ht = body.half
    pu = 0.55 * hu  # pedicles straddle the canal
    ps = 0.25 * hs  # and leave the upper half of the body
    back = ht + 9.0  # posterior end of the pedicles
    parts = []
    for side in (-1.0, 1.0):
        x = side * pu
        parts += [
            ((x, ps, ht - 4), (x, ps, back), (4.0, 6.0, 4.0)),
            ((x + side, -hs - 4, back + 2), (x + side, hs + 3, back), (4.5, 4.5, 5.0)),
            ((x, ps, back), (side * (hu + 16), ps + 2, back - 5), (4.0, 4.5, 3.0)),
            ((x + side, ps - 2, back + 2), (0.0, ps - 4, back + 12), (3.5, 8.0, 3.0)),
        ]
    parts.append(((0.0, ps - 4, back + 12), (0.0, ps - 13, back + 36), (3.0, 8.0, 4.0)))
    return parts


def _to_frame(part: Part, point) -> np.ndarray:
    """A point of a part's local frame in the spine frame (inverse of _local)."""
    u, s, t = point
    cos, sin = math.cos(part.tilt), math.sin(part.tilt)
    return np.array(part.centre) + np.array([u, s * cos - t * sin, s * sin + t * cos])


def _part_box(grid: Grid, spine: "Spine", part: Part, margin: float):
    """Index box around a part's tilted bounding box grown by ``margin`` mm."""
    corners = np.array([_to_frame(part, np.array(c) * (np.array(part.half) + margin)) for c in product((-1, 1), repeat=3)])
    return _box(grid, spine.centre, corners.min(0), corners.max(0))


def make_spine(grid: Grid, rng: np.random.Generator) -> Spine:
    """Draw a random lumbar spine placed in the grid's field of view."""
    corners = np.array([grid.origin + grid.steps @ (np.array(c) * (np.array(grid.shape) - 1)) for c in product((0, 1), repeat=3)])
    fov_ap = float(np.ptp(corners[:, 1]))
    n = int(rng.integers(5, 8))
    heights = rng.uniform(25, 30, n) * (1 + 0.02 * np.arange(n)[::-1] / n)
    gaps = rng.uniform(6, 10, n)
    length = float(heights.sum() + gaps.sum())
    lordosis = rng.uniform(8, 22)
    centre = corners.mean(0) + np.array([rng.normal(0, 2), 0.06 * fov_ap + rng.uniform(-5, 5), rng.uniform(-15, 15)])
    # body-centre line t(s): lordotic, most anterior in the lower third, steeply posterior
    # upwards, continued straight beyond the column; s = 0 at the centre
    apex = length * rng.uniform(-0.3, -0.1)
    fov_s = corners[:, 2] - centre[2]
    curve_s = np.linspace(min(-length / 2, fov_s.min()) - 120, max(length / 2, fov_s.max()) + 120, 4096)
    x = (curve_s - apex) / (length / 2)
    ends = np.clip(x, (-length / 2 - 50 - apex) / (length / 2), (length / 2 + 10 - apex) / (length / 2))
    curve_t = lordosis * (ends**2 + 2 * ends * (x - ends))
    curve_t -= np.interp(0.0, curve_s, curve_t)
    curve_u = rng.uniform(-4, 4) * np.sin(np.pi * np.clip(curve_s / length, -0.5, 0.5))
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(curve_s), np.diff(curve_t)))])
    arc -= np.interp(0.0, curve_s, arc)

    def part(position, half, extra_tilt=0.0):
        s = float(np.interp(position, arc, curve_s))
        slope = float(np.interp(s, curve_s, np.gradient(curve_t, curve_s)))
        centre = (float(np.interp(s, curve_s, curve_u)), s, float(np.interp(s, curve_s, curve_t)))
        return Part(centre, math.atan(slope) + extra_tilt, half)

    vertebrae, discs = [], []
    position = -length / 2
    k = 0
    while k < n or (position < fov_s.max() + 20 and k < MAX_INDEX):  # smaller thoracic levels up to the top of the view
        scale = 1.0 + 0.04 * (n - 1 - k) / max(n - 1, 1)
        height, gap = (heights[k], gaps[k]) if k < n else (rng.uniform(21, 26), rng.uniform(4, 7))
        body = (rng.uniform(20, 24) * scale, height / 2, rng.uniform(15, 18) * scale)
        discs.append(part(position + gap / 2, (body[0] * 0.97, gap / 2 + 2.5, body[2] * 0.97)))
        vertebrae.append(part(position + gap + height / 2, body))
        position += gap + height
        k += 1
    bottom = vertebrae[0].half
    sacrum = part(-length / 2 - 22, (bottom[0] * 1.05, 22.0, bottom[2] * 1.1), extra_tilt=0.35)
    canal_half = (rng.uniform(8, 10), rng.uniform(5.5, 7.5))
    return Spine(
        centre=centre,
        curve_s=curve_s,
        curve_t=curve_t,
        curve_u=curve_u,
        vertebrae=vertebrae,
        discs=discs,
        sacrum=sacrum,
        degeneration=np.where(rng.random(len(discs)) < 0.3, rng.uniform(0.3, 0.8, len(discs)), rng.uniform(0.0, 0.2, len(discs))),
        canal_half=canal_half,
        canal_offset=float(np.mean([v.half[2] for v in vertebrae])) + canal_half[1] + 1.0,
        back=rng.uniform(75, 105),
        fat=rng.uniform(8, 25),
        coil_mm=rng.uniform(150, 300),
    )


def _smooth_noise(rng: np.random.Generator, grid: Grid, cell_mm: float, axes=(0, 1, 2)) -> np.ndarray:
    """Gaussian-smoothed white noise (about unit variance, correlation length ``cell_mm``) on
    the canonical grid, built separably from a coarse lattice; constant (size 1) along the
    axes not in ``axes``."""
    shape = [int(math.ceil(n * sp / cell_mm)) + 3 if c in axes else 1 for c, (n, sp) in enumerate(zip(grid.shape, grid.spacing))]
    out = rng.standard_normal(shape, dtype=np.float32)
    for axis in sorted(axes, reverse=True):
        fine = np.arange(grid.shape[axis]) * (grid.spacing[axis] / cell_mm) + 1.5
        weights = np.exp(-0.5 * (fine[:, None] - np.arange(shape[axis])[None, :]) ** 2)
        weights = (weights / weights.sum(1, keepdims=True)).astype(np.float32)
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [axis])), 0, axis)
    sample = out[tuple(slice(None, None, max(1, n // 16)) for n in out.shape)]
    return out * (1.0 / max(float(sample.std()), 1e-6))


def _tissue(name: str, contrast: str) -> float:
    return TISSUES[name][0 if contrast == "t1" else 1]


def _around_spine(grid: Grid, spine: Spine, lo=(0, 0, 0), hi=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, s, t) of an index box relative to the body-centre line at each height s (mm)."""
    u, s, t = _frame(grid, spine.centre, lo, hi)
    return u - np.interp(s, spine.curve_s, spine.curve_u).astype(np.float32), s, t - np.interp(s, spine.curve_s, spine.curve_t).astype(np.float32)


def _background(u, rel, spine: Spine, contrast: str, step: float = 0.25) -> np.ndarray:
    """Soft tissue (abdomen), back muscles, subcutaneous fat and air, from the (u, rel)
    coordinates of _around_spine, looked up in a ``step`` mm table over (u, rel)."""
    depth = float(np.mean([v.half[2] for v in spine.vertebrae]))
    lo_u, lo_rel = float(u.min()), float(rel.min())
    table_u = lo_u + step * np.arange(int((float(u.max()) - lo_u) / step) + 2, dtype=np.float32)[:, None]
    table_rel = lo_rel + step * np.arange(int((float(rel.max()) - lo_rel) / step) + 2, dtype=np.float32)[None, :]
    below_skin = table_rel + (25.0 / 120.0**2) * table_u**2 - spine.back  # < 0 inside the body
    muscle = (table_rel > depth - 2) & (np.abs(table_u) < 80) & (below_skin < -spine.fat - 2)
    table = np.where(below_skin > -spine.fat, _tissue("fat", contrast), _tissue("soft", contrast))
    table = np.where(muscle, _tissue("muscle", contrast), np.where(below_skin > 0, 0.0, table)).astype(np.float32)
    iu = np.rint((u - lo_u) * (1.0 / step)).astype(np.intp)
    irel = np.rint((rel - lo_rel) * (1.0 / step)).astype(np.intp)
    return table[iu, irel]


def _paint(image, labels, box, d, value, label: int | None) -> None:
    """Blend ``value`` into the image box with a soft edge; set ``label`` where d <= 0."""
    region = tuple(slice(a, b) for a, b in zip(*box))
    view = image[region]
    d = np.broadcast_to(d, view.shape)
    weight = np.clip(0.5 - d * (1.0 / EDGE_MM), 0.0, 1.0)
    view += weight * (value - view)
    if label is not None:
        labels[region][d <= 0] = label


def _paint_tube(grid, spine: Spine, image, labels, lateral: float, offset: float, half, s_range, value: float, label: int | None, mirrored: bool = False) -> None:
    """Paint an elliptic tube (L-R, A-P half sizes) that follows the body-centre line,
    ``lateral`` mm to the left (both sides if ``mirrored``) and ``offset`` mm behind it."""
    bottom, top = s_range
    along = spine.curve_t[(spine.curve_s >= bottom) & (spine.curve_s <= top)]
    reach = abs(lateral) + half[0] + 6
    lo = (-reach if mirrored else lateral - half[0] - 6, bottom, along.min() + offset - half[1] - 2)
    hi = (reach, top, along.max() + offset + half[1] + 2)
    box = _box(grid, spine.centre, lo, hi)
    if box:
        u, s, rel = _around_spine(grid, spine, *box)
        du = (np.abs(u) if mirrored else u) - lateral
        d = (np.sqrt((du * (1.0 / half[0])) ** 2 + ((rel - offset) * (1.0 / half[1])) ** 2) - 1.0) * float(min(half))
        _paint(image, labels, box, np.maximum(d, np.maximum(bottom - s, s - top)), value, label)


def _render_spine(grid: Grid, spine: Spine, contrast: str, image: np.ndarray, labels: np.ndarray) -> list[tuple]:
    """Paint psoas, great vessels, sacrum, canal, posterior elements, discs and vertebral
    bodies, in that order; return the (box, label) of everything labelled."""
    value = lambda name: _tissue(name, contrast)  # noqa: E731
    depth = float(np.mean([v.half[2] for v in spine.vertebrae]))
    width = float(np.mean([v.half[0] for v in spine.vertebrae]))
    everywhere = (spine.curve_s[0], spine.curve_s[-1])
    _paint_tube(grid, spine, image, labels, width + 14, -2.0, (14.0, 16.0), everywhere, value("muscle"), None, mirrored=True)
    above_l4 = (spine.vertebrae[2].centre[1], spine.curve_s[-1])
    for lateral, radius in ((16.0, 10.0), (-16.0, 11.0)):  # aorta on the left, vena cava on the right
        _paint_tube(grid, spine, image, labels, lateral, -(depth + radius + 3), (radius, radius), above_l4, value("vessel"), None)
    painted = []

    def paint_part(part: Part, margin: float, distance, intensity, label):
        box = _part_box(grid, spine, part, margin)
        if box:
            u, s, t = _local(*_frame(grid, spine.centre, *box), part)
            d, extra = distance(u, s, t)
            _paint(image, labels, box, d, intensity(d, s, extra), label)
            painted.append((box, label))

    def bone(d, s, rho2):
        return value("marrow") + (value("cortex") - value("marrow")) * np.clip((d + 1.2) * (1.0 / 1.0), 0.0, 1.0)

    paint_part(spine.sacrum, 2.0, lambda u, s, t: _rounded_cylinder(u, s, t, spine.sacrum.half), bone, None)
    _paint_tube(grid, spine, image, labels, 0.0, spine.canal_offset, spine.canal_half, (spine.sacrum.centre[1], spine.curve_s[-1]), value("csf"), CANAL_LABEL)
    for k, body in enumerate(spine.vertebrae, start=1):
        for a, b, radii in _posterior_elements(body):
            ends = np.array([_to_frame(body, a), _to_frame(body, b)])
            box = _box(grid, spine.centre, ends.min(0) - max(radii), ends.max(0) + max(radii))
            if box:
                d = _capsule(*_local(*_frame(grid, spine.centre, *box), body), a, b, radii)
                _paint(image, labels, box, d, value("posterior"), k)
                painted.append((box, k))
    for k, disc in enumerate(spine.discs, start=1):
        nucleus_half = 0.9 * (disc.half[1] - 2.5)
        bright = value("nucleus") + (value("annulus") - value("nucleus")) * float(spine.degeneration[k - 1])

        def disc_value(d, s, rho2, bright=bright, nucleus_half=nucleus_half):
            nucleus = np.clip((1.0 - np.sqrt(rho2 * (1 / 0.6) + (s * (1.0 / nucleus_half)) ** 2)) * (1 / 0.25), 0.0, 1.0)
            return value("annulus") + (bright - value("annulus")) * nucleus

        paint_part(disc, 1.0, lambda u, s, t, disc=disc: _rounded_cylinder(u, s, t, disc.half), disc_value, DISC_OFFSET + k)
    for k, body in enumerate(spine.vertebrae, start=1):
        paint_part(body, 1.5, lambda u, s, t, body=body: _rounded_cylinder(u, s, t, body.half, waist=0.06), bone, k)
    return painted


def _renumber(labels: np.ndarray, painted: list[tuple]) -> None:
    """Shift vertebra and disc numbers so that the lowest visible level is 1, in place."""
    levels = [label % DISC_OFFSET for box, label in painted if label is not None and np.any(labels[tuple(slice(a, b) for a, b in zip(*box))] == label)]
    shift = min(levels, default=1) - 1
    if shift:
        labels[(labels >= 1) & (labels < CANAL_LABEL)] -= shift
        labels[labels > DISC_OFFSET] -= shift


def _contrast(contrast: str) -> str:
    key = contrast.lower()
    if key.startswith("t1"):
        return "t1"
    if key.startswith("t2"):
        return "t2"
    raise ValueError(f"unknown contrast {contrast!r}: expected 't1' or 't2'")


def render(grid: Grid, contrast: str = "t2", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image (float32, about 0-1) and SPIDER labels (int16) on a canonical grid."""
    contrast = _contrast(contrast)
    rng = np.random.default_rng(seed)
    spine = make_spine(grid, rng)
    u, _, rel = _around_spine(grid, spine)
    image = _background(u, rel, spine, contrast)
    labels = np.zeros(grid.shape, np.int16)
    _renumber(labels, _render_spine(grid, spine, contrast, image, labels))
    # tissue texture; posterior receive coil: signal fades with depth; smooth in-plane bias field
    bias = np.exp(np.minimum(rel - spine.back, 0.0) * (1.0 / spine.coil_mm) + 0.2 * _smooth_noise(rng, grid, 60.0, axes=(1, 2)))
    texture = _smooth_noise(rng, grid, 4.0)
    texture *= 0.12
    texture += 1.0
    image *= texture
    image *= bias
    # Rician noise; the imaginary part reuses the real part's samples in reverse order
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    noise *= rng.uniform(0.015, 0.04)
    image += noise
    return np.hypot(image, noise.reshape(-1)[::-1].reshape(grid.shape), out=image), labels


def synthesize(size, spacing, direction=None, contrast: str = "t2", seed: int = 0, origin=(0.0, 0.0, 0.0)):
    """Synthetic (image int16, mask int16) on the ITK grid ``size``/``spacing``/``direction``/``origin``."""
    import SimpleITK as sitk

    size = tuple(int(n) for n in size)
    spacing = tuple(float(s) for s in spacing)
    direction = tuple(float(d) for d in (direction if direction is not None else np.eye(3).ravel()))
    if len(size) != 3 or len(spacing) != 3 or len(direction) != 9 or min(size) < 1 or min(spacing) <= 0:
        raise ValueError(f"expected a 3D grid, got size {size}, spacing {spacing}, {len(direction)} direction cosines")
    grid, orient = canonical_grid(size, spacing, direction, origin)
    image, labels = render(grid, contrast, seed)
    scale = np.random.default_rng(seed).uniform(600, 2000)
    image = np.clip(np.rint(image * scale), 0, np.iinfo(np.int16).max).astype(np.int16)
    out = []
    for array in (image, labels):
        itk = sitk.GetImageFromArray(orient.from_canonical(array))
        itk.SetSpacing(spacing)
        itk.SetDirection(direction)
        itk.SetOrigin(tuple(float(o) for o in origin))
        out.append(itk)
    return out[0], out[1]


def synthesize_like(reference, contrast: str = "t2", seed: int = 0):
    """Synthetic (image, mask) on exactly ``reference``'s grid (size, spacing, origin, direction)."""
    return synthesize(reference.GetSize(), reference.GetSpacing(), reference.GetDirection(), contrast, seed, reference.GetOrigin())


def write_dicom_series(image, folder: str | Path, number: int = 1, description: str = "synthetic", axis: int | None = None,
                       uid: str | None = None, image_type: str = "ORIGINAL\\PRIMARY\\M", tags: dict[str, str] | None = None) -> list[Path]:
    """Write a 3D image as an MR DICOM series, one int16 file per slice along ITK ``axis``
    (default: the axis closest to left-right, so the slices are sagittal); each slice's
    ImagePositionPatient and ImageOrientationPatient come from the image's grid, ``tags``
    ('gggg|eeee': value) are added to every file. Return the files."""
    import SimpleITK as sitk

    if axis is None:
        axis = int(np.argmax(np.abs(np.asarray(image.GetDirection()).reshape(3, 3)[0])))
    stack = sitk.PermuteAxes(sitk.Cast(image, sitk.sitkInt16), [(axis + 1) % 3, (axis + 2) % 3, axis])  # cyclic: keeps handedness
    uid = uid or f"2.25.{uuid.uuid4().int}"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(stack.GetDepth()):
        piece = stack[:, :, k : k + 1]
        for tag, value in ({
            "0008|0008": image_type, "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0008|0018": f"{uid}.{k + 1}",
            "0008|0060": "MR", "0008|103e": description, "0020|000d": f"{uid}.0", "0020|000e": uid, "0020|0052": f"{uid}.0.1",
            "0020|0011": str(number), "0020|0013": str(k + 1), "0018|0050": f"{stack.GetSpacing()[2]:.6g}", "0010|0020": "SYNTHETIC", "0020|0010": "1",
        } | (tags or {})).items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{number:03d}-{k + 1:04d}.dcm"))
        writer.Execute(piece)
        paths.append(folder / f"{number:03d}-{k + 1:04d}.dcm")
    return paths


def signed_permutations() -> list[tuple[float, ...]]:
    """All 48 direction matrices (row-major) that are signed permutations."""
    out = []
    for perm in permutations(range(3)):
        for signs in product((1.0, -1.0), repeat=3):
            d = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs)):
                d[row, col] = sign
            out.append(tuple(d.ravel()))
    return out


def write_spider_dataset(folder: str | Path, n_cases: int, seed: int = 0, max_size: int = 256, validation_fraction: float = 0.2, progress: bool = False) -> Path:
    """Write ``n_cases`` synthetic series in SPIDER layout (images/, masks/, overview.csv) with
    SPIDER-like spacing (slices 3.3-4.8 mm, in-plane 0.33-0.9 mm), in-plane sizes up to
    ``max_size`` and random axis order and flips; return the overview path."""
    from algorithm.io import write_image
    import SimpleITK as sitk

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    directions = signed_permutations()
    rows = []
    cases = range(n_cases)
    if progress:
        from tqdm import tqdm

        cases = tqdm(cases, desc="synthesize", unit="case")
    for case in cases:
        contrast = ("t1", "t2")[case % 2]
        case_id = f"{case + 1}_{contrast}"
        inplane = rng.uniform(0.33, 0.9)
        inplane = (inplane, inplane if rng.random() < 0.7 else rng.uniform(0.33, 0.9))
        canonical_spacing = (rng.uniform(3.3, 4.8), *inplane)  # L-R, S-I, A-P
        fov = (rng.uniform(50, 80), rng.uniform(200, 280), rng.uniform(200, 280))
        canonical_size = [max(8, min(max_size, round(f / s))) for f, s in zip(fov, canonical_spacing)]
        direction = directions[int(rng.integers(len(directions)))]
        d = np.asarray(direction).reshape(3, 3)
        # ITK axis c runs along physical axis phys(c); canonical axes are (x, z, y)
        canonical_of_phys = {0: 0, 2: 1, 1: 2}
        which = [canonical_of_phys[int(np.argmax(np.abs(d[:, c])))] for c in range(3)]
        size = [canonical_size[w] for w in which]
        spacing = [canonical_spacing[w] for w in which]
        origin = tuple(rng.uniform(-150, 150, 3))
        image, mask = synthesize(size, spacing, direction, contrast, int(rng.integers(2**31)), origin)
        for sub, itk in (("images", image), ("masks", mask)):
            write_image(sitk.GetArrayViewFromImage(itk), itk, folder / sub / f"{case_id}.mha")
        values = np.unique(sitk.GetArrayViewFromImage(mask))
        rows.append({
            "new_file_name": case_id,
            "subset": "validation" if rng.random() < validation_fraction else "training",
            "num_vertebrae": int(((values >= 1) & (values < CANAL_LABEL)).sum()),
            "num_discs": int((values > DISC_OFFSET).sum()),
            "mask_source": "synthetic",
        })
    path = folder / "overview.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["new_file_name", "subset"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic lumbar spine MR dataset in SPIDER layout.")
    parser.add_argument("out_dir", type=Path, help="folder to write images/, masks/ and overview.csv into")
    parser.add_argument("--cases", type=int, default=10, help="number of series (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--max-size", type=int, default=256, help="largest in-plane size in voxels (default 256)")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.max_size < 16:
        parser.error("--cases must be >= 1 and --max-size >= 16")
    path = write_spider_dataset(args.out_dir, args.cases, args.seed, args.max_size, progress=True)
    print(f"wrote {args.cases} cases to {path.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
