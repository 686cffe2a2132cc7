"""Per-level measurements on masks of known geometry: heights of tilted, wedge-shaped bodies and
discs, the canal's AP diameter, posterior elements left out, and None (never a crash) where a
measurement cannot be made."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import ndimage

from algorithm.labels import CANAL_LABEL
from algorithm.measure import EDGE_FRACTION, _boxes, as_json, measure, write_csv

SPACING = (3.0, 0.5, 0.6)  # canonical: L-R slices, S-I rows, A-P columns


def trapezoid(shape, spacing, centre, angle_deg, depth, front, back):
    """2D mask of a quadrilateral in a sagittal slice: ``depth`` mm along the endplate direction
    (tilted ``angle_deg`` from A-P, posterior end lower for positive angles), ``front`` mm high
    at the anterior edge, ``back`` mm at the posterior edge, centred on ``centre`` (S-I, A-P mm)."""
    rows, cols = np.meshgrid(np.arange(shape[0]) * spacing[1], np.arange(shape[1]) * spacing[2], indexing="ij")
    th = math.radians(angle_deg)
    u = np.array([math.sin(th), math.cos(th)])  # (S-I, A-P): towards posterior
    v = np.array([math.cos(th), -math.sin(th)])  # towards inferior
    a = (rows - centre[0]) * u[0] + (cols - centre[1]) * u[1]
    b = (rows - centre[0]) * v[0] + (cols - centre[1]) * v[1]
    height = front + (back - front) * (a / depth + 0.5)
    return (np.abs(a) <= depth / 2) & (np.abs(b) <= height / 2), u, v


def expected_heights(front: float, back: float) -> dict[str, float]:
    at = lambda x: front + (back - front) * x  # noqa: E731
    return {"anterior": at(EDGE_FRACTION), "middle": at(0.5), "posterior": at(1 - EDGE_FRACTION)}


def one_voxel(spacing=SPACING) -> float:
    return max(spacing[1:])


def heights_of(level) -> dict[str, float]:
    return {name: chord.mm for name, chord in level.heights.items()}


@pytest.mark.parametrize("angle", [0.0, 18.0, -12.0])
def test_tilted_wedge_vertebra_with_posterior_elements(angle):
    shape = (7, 260, 240)
    labels = np.zeros(shape, np.int16)
    body, u, v = trapezoid(shape[1:], SPACING, (65.0, 45.0), angle, 34.0, 24.0, 28.0)
    canal, *_ = trapezoid(shape[1:], SPACING, tuple(np.array((65.0, 45.0)) + 28.0 * u), angle, 14.0, 200.0, 200.0)
    arch, *_ = trapezoid(shape[1:], SPACING, tuple(np.array((65.0, 45.0)) + 50.0 * u + 8.0 * v), angle, 25.0, 40.0, 40.0)
    labels[1:6][:, body | arch] = 1  # the spinous process behind the canal belongs to vertebra 1 too
    labels[2:5][:, canal] = CANAL_LABEL
    (level,) = measure(labels, SPACING)
    assert level.label == 1 and level.structure == "vertebra" and level.slice == 3
    got, want = heights_of(level), expected_heights(24.0, 28.0)
    for name in want:
        assert abs(got[name] - want[name]) <= one_voxel(), (name, got, want)


def body_between_discs(shape, centre, angle: float, size: float, disc_depth: float, values) -> tuple[np.ndarray, np.ndarray]:
    """Labels of a square body ``size`` mm tilted ``angle`` degrees with a 10 mm disc ``disc_depth`` mm
    deep above and below it (``values``: body, upper disc, lower disc), in slices 1-3; the lower disc's mask."""
    labels = np.zeros(shape, np.int16)
    centre = np.asarray(centre)
    body, u, v = trapezoid(shape[1:], SPACING, tuple(centre), angle, size, size, size)
    upper, *_ = trapezoid(shape[1:], SPACING, tuple(centre - (size / 2 + 5.0) * v), angle, disc_depth, 10.0, 10.0)
    lower, *_ = trapezoid(shape[1:], SPACING, tuple(centre + (size / 2 + 5.0) * v), angle, disc_depth, 10.0, 10.0)
    labels[1:4][:, body] = values[0]
    labels[1:4][:, upper & ~body] = values[1]
    labels[1:4][:, lower & ~body] = values[2]
    return labels, lower & ~body


@pytest.mark.parametrize("angle", [20.0, -25.0])
def test_square_body_is_measured_across_its_discs_not_along_its_diagonal(angle):
    """A body as tall as it is deep has no principal axis of its own: its heights are taken
    perpendicular to the discs above and below it."""
    labels, _ = body_between_discs((5, 300, 260), (75.0, 70.0), angle, 30.0, 34.0, (2, 203, 202))
    level = {lv.label: lv for lv in measure(labels, SPACING)}[2]
    for name, got in heights_of(level).items():
        assert abs(got - 30.0) <= one_voxel(), (name, heights_of(level))


@pytest.mark.parametrize("angle", [0.0, 15.0])
def test_tilted_disc_and_canal_diameter(angle):
    shape = (5, 200, 240)
    labels = np.zeros(shape, np.int16)
    centre = np.array((50.0, 40.0))
    disc, u, v = trapezoid(shape[1:], SPACING, tuple(centre), angle, 36.0, 12.0, 6.0)
    canal, *_ = trapezoid(shape[1:], SPACING, tuple(centre + (18.0 + 4.0 + 7.5) * u), angle, 15.0, 120.0, 120.0)
    labels[1:4][:, disc] = 201
    labels[:, canal] = CANAL_LABEL
    (level,) = measure(labels, SPACING)
    got, want = heights_of(level), expected_heights(12.0, 6.0)
    for name in want:
        assert abs(got[name] - want[name]) <= one_voxel(), (name, got, want)
    assert level.canal is not None and abs(level.canal.mm - 15.0) <= one_voxel()


def test_column_of_boxes_json_and_csv(tmp_path):
    labels = np.zeros((9, 200, 160), np.int16)
    labels[3:6, :, 100:126] = CANAL_LABEL  # 26 columns: 15.6 mm
    labels[1:8, 60:110, 30:90] = 2  # 50 rows: 25 mm
    labels[1:8, 110:120, 32:88] = 202  # 5 mm
    labels[1:8, 120:170, 30:90] = 1  # 25 mm
    labels[1:8, 170:186, 32:88] = 201  # 8 mm
    labels[3:6, 110:186, 130:150] = 1  # spinous process, reaching lower than the body
    labels[1, 125:140, 88:130] = labels[7, 125:140, 88:130] = 1  # pedicles (not in the mid slice)
    levels = measure(labels, SPACING)
    assert [lv.label for lv in levels] == [1, 2, 201, 202]
    table = as_json(levels)
    for v in ("1", "2"):
        assert all(abs(table["vertebrae"][v][h] - 25.0) <= 0.5 for h in ("anterior", "middle", "posterior")), table["vertebrae"][v]
    assert all(abs(table["discs"]["202"][h] - 5.0) <= 0.5 for h in ("anterior", "middle", "posterior"))
    assert all(abs(table["discs"]["201"][h] - 8.0) <= 0.5 for h in ("anterior", "middle", "posterior"))
    assert abs(table["discs"]["201"]["canal_ap_diameter"] - 15.6) <= 0.6
    rows = list(csv.DictReader(write_csv(levels, tmp_path / "m.csv").open()))
    assert [r["label"] for r in rows] == ["1", "2", "201", "202"]
    assert rows[0]["canal_ap_mm"] == "" and float(rows[2]["canal_ap_mm"]) == table["discs"]["201"]["canal_ap_diameter"]


def test_missing_and_unmeasurable_give_none_never_a_crash():
    assert measure(np.zeros((3, 20, 20), np.int16), SPACING) == []
    assert measure(np.zeros((0, 20, 20), np.int16), SPACING) == []
    labels = np.zeros((4, 120, 120), np.int16)
    labels[1, 10, 10] = 3  # a single voxel
    labels[:, 40:60, 20:70] = 1  # a vertebra, no canal anywhere: still measured
    labels[:, 60:70, 20:70] = 201  # a disc with no canal behind it
    labels[:, 90:120, 20:70] = 2  # cut by the bottom of the image
    levels = {lv.label: lv for lv in measure(labels, SPACING)}
    assert all(c is None for c in levels[3].heights.values())
    assert abs(levels[1].heights["middle"].mm - 10.0) <= 0.5
    assert levels[201].canal is None and levels[201].heights["middle"] is not None
    assert all(c is None for c in levels[2].heights.values())
    table = as_json(list(levels.values()))
    assert table["discs"]["201"]["canal_ap_diameter"] is None and table["vertebrae"]["3"]["middle"] is None


def test_synthetic_spine_heights_and_canal():
    """The project's generator: each whole vertebral body's middle height is its drawn height,
    each disc's the gap between the bodies, the canal's diameter the tube's A-P size."""
    from spider_tools.synthetic import canonical_grid, make_spine, render

    grid, _ = canonical_grid((15, 280, 256), (4.0, 0.9, 0.9), np.eye(3).ravel(), (0.0, 0.0, 0.0))
    spine = make_spine(grid, np.random.default_rng(3))
    _, labels = render(grid, "t2", seed=3)
    levels = {lv.label: lv for lv in measure(labels, grid.spacing)}
    measured = 0
    for k, body in enumerate(spine.vertebrae, start=1):
        level = levels.get(k)
        if level is None or level.heights["middle"] is None:
            continue
        assert abs(level.heights["middle"].mm - 2 * body.half[1]) <= 0.9, (k, level.heights["middle"].mm, 2 * body.half[1])
        measured += 1
    for k, disc in enumerate(spine.discs, start=1):
        level = levels.get(200 + k)
        if level is None or level.heights["middle"] is None:
            continue
        gap = 2 * disc.half[1] - 5.0  # the disc is drawn 2.5 mm into each body
        assert abs(level.heights["middle"].mm - gap) <= 0.9, (k, level.heights["middle"].mm, gap)
        assert abs(level.canal.mm - 2 * spine.canal_half[1]) <= 0.9, (k, level.canal.mm, 2 * spine.canal_half[1])
        measured += 1
    assert measured >= 10


def test_boxes_match_scipy_find_objects():
    """measure takes its bounding boxes from cc3d, so the container needs no scipy; scipy's own are the reference."""
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 40, 30), np.int16)
    for value in (1, 3, 100, 201):  # 2 and 4..99 absent
        z, y, x = rng.integers(0, 5), rng.integers(0, 30), rng.integers(0, 20)
        labels[z:z + 2, y:y + 8, x:x + 9] = value
    assert _boxes(labels) == ndimage.find_objects(labels)


def one_voxel_along(angle: float, spacing=SPACING) -> float:
    """A voxel's extent along the height direction of a structure tilted ``angle`` degrees (a sampled
    chord is off by at most about that much: 0.6 mm upright, 0.78 mm at 45 degrees)."""
    th = math.radians(angle)
    return abs(math.cos(th)) * spacing[1] + abs(math.sin(th)) * spacing[2]


@pytest.mark.parametrize("angle", [0.0, 15.0, 30.0, 45.0, 50.0, 60.0, -30.0, -60.0])
def test_flat_disc_at_any_tilt(angle):
    """A 10 x 40 mm disc alone: its endplate direction is its axis of largest extent, past 45 degrees too."""
    shape = (5, 300, 260)
    labels = np.zeros(shape, np.int16)
    disc, *_ = trapezoid(shape[1:], SPACING, (75.0, 75.0), angle, 40.0, 10.0, 10.0)
    labels[1:4][:, disc] = 201
    (level,) = measure(labels, SPACING)
    for name, got in heights_of(level).items():
        assert abs(got - 10.0) <= one_voxel_along(angle), (name, heights_of(level))


@pytest.mark.parametrize("angle", [0.0, 15.0, 30.0, 45.0, 60.0, -30.0, -60.0])
def test_square_body_between_discs_at_any_tilt(angle):
    shape = (5, 320, 300)
    labels, lower = body_between_discs(shape, (80.0, 90.0), angle, 28.0, 30.0, (20, 219, 220))  # top-down: 219 above 20, 220 below
    further, *_ = trapezoid(shape[1:], SPACING, (150.0, 90.0), 0.0, 30.0, 8.0, 8.0)  # the next disc down, level: pairing is by
    labels[1:4][:, further & (labels[1] == 0)] = 221  # position, not by number
    level = {lv.label: lv for lv in measure(labels, SPACING)}[20]
    for name, got in heights_of(level).items():
        assert abs(got - 28.0) <= one_voxel_along(angle), (name, heights_of(level))


@pytest.mark.parametrize("angle", [0.0, 30.0, 60.0])
def test_square_body_without_discs_follows_the_canal(angle):
    """A 28 x 28 mm body tilted 30 degrees measured 12.0 / 33.2 / 12.0 mm from its own covariance."""
    shape = (5, 320, 300)
    labels = np.zeros(shape, np.int16)
    centre = np.array((80.0, 90.0))
    body, u, v = trapezoid(shape[1:], SPACING, tuple(centre), angle, 28.0, 28.0, 28.0)
    canal, *_ = trapezoid(shape[1:], SPACING, tuple(centre + 24.0 * u), angle, 12.0, 90.0, 90.0)
    labels[1:4][:, body] = 3
    labels[1:4][:, canal & ~body] = CANAL_LABEL
    level = {lv.label: lv for lv in measure(labels, SPACING)}[3]
    for name, got in heights_of(level).items():
        assert abs(got - 28.0) <= one_voxel_along(angle), (name, heights_of(level))
