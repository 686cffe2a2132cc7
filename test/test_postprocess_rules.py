"""Post-processing rules of issue 21, each on a small constructed class map that today's code got wrong."""

from __future__ import annotations

import numpy as np
import pytest
from test_postprocess import SPACING, dice, run, spine, vertebra_labels

from algorithm.config import Config
from algorithm.labels import CANAL, DISC, VERTEBRA
from algorithm.postprocess import postprocess


def test_stray_canal_in_front_of_the_bodies_neither_splits_them_nor_becomes_canal():
    classes, expected = spine()
    classes, expected = (np.pad(a, ((0, 0), (0, 0), (30, 0))) for a in (classes, expected))  # bodies at depth 38-68 mm
    classes[6:10, 5:-5, 24:30] = CANAL  # a canal-labelled tube 8 mm in front of the bodies, along the spine
    log: list[dict] = []
    out = postprocess(classes, SPACING, Config(), log)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    for k in range(1, 5):
        assert dice(out == k, expected == k) > 0.95
    np.testing.assert_array_equal(out == 100, expected == 100)
    assert any(r["action"] == "dropped" and r["class"] == "canal" for r in log)


def _plate(slices: int, slice_mm: float, tilt_deg: float, depth_mm: float = 30.0, height_mm: float = 8.0, width_mm: float | None = None) -> np.ndarray:
    """Voxel positions (mm) of a disc: a plate depth x height in the sagittal plane, tilted by tilt_deg
    (its front up), in ``slices`` sagittal slices (or over width_mm left-right at 1 mm)."""
    a = np.radians(tilt_deg)
    u, v = np.array([np.sin(a), np.cos(a)]), np.array([np.cos(a), -np.sin(a)])  # (S-I, A-P): along the depth, along the height
    s, t = np.meshgrid(np.arange(-depth_mm / 2, depth_mm / 2, 0.5), np.arange(-height_mm / 2, height_mm / 2, 0.5))
    sagittal = s.ravel()[:, None] * u + t.ravel()[:, None] * v
    lr = np.arange(slices) * slice_mm if width_mm is None else np.arange(0, width_mm, 1.0)
    return np.concatenate([np.column_stack([np.full(len(sagittal), x), sagittal]) for x in lr])


@pytest.mark.parametrize("slices, slice_mm, tilt", [(2, 4.4, 0), (2, 4.4, 20), (3, 3.3, 10), (2, 3.3, 45)])
def test_disc_in_a_few_thick_slices_gets_a_normal_in_the_sagittal_plane(slices, slice_mm, tilt):
    from algorithm.postprocess.discs import disc_plane

    normal = disc_plane(_plate(slices, slice_mm, tilt)).normal
    a = np.radians(tilt)
    assert abs(normal[0]) < 0.05
    assert abs(abs(normal @ np.array([0.0, np.cos(a), -np.sin(a)])) - 1) < 0.01


@pytest.mark.parametrize("tilt", [0, 30, 55])
def test_wide_disc_normal_follows_its_sagittal_tilt(tilt):
    from algorithm.postprocess.discs import disc_plane

    normal = disc_plane(_plate(0, 0, tilt, width_mm=45.0)).normal
    a = np.radians(tilt)
    assert abs(abs(normal @ np.array([0.0, np.cos(a), -np.sin(a)])) - 1) < 0.01


def test_disc_pieces_at_one_level_share_its_number():
    from algorithm.postprocess import number_structures

    verts, discs = np.zeros((2, 60, 4), np.uint16), np.zeros((2, 60, 4), np.uint16)
    verts[:, 5:20] = 1  # the upper vertebra: 2
    discs[0, 20:26], discs[1, 21:26] = 1, 2  # its disc in two pieces, left and right
    verts[:, 26:45] = 2  # the lower vertebra: 1
    discs[:, 45:52] = 3
    out = number_structures(verts, discs)
    assert set(np.unique(out[discs == 1])) == set(np.unique(out[discs == 2])) == {202}
    assert set(np.unique(out[discs == 3])) == {201}


def _with_bottom(rows: int, classes: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """spine() with a vertebra-labelled block of ``rows`` mm right below its lowest disc (rows 122-), and an
    empty margin to the volume's inferior edge when the block stops short of it."""
    classes, expected = classes.copy(), expected.copy()
    classes[2:14, 122 : 122 + rows, 8:38] = VERTEBRA
    return classes, expected


def test_sacrum_below_the_lowest_disc_is_not_a_vertebra():
    classes, expected = _with_bottom(6, *spine())  # stops 4 mm above the inferior edge: its lower end is seen, and no disc
    log: list[dict] = []
    out = postprocess(classes, SPACING, Config(), log)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    assert not ((out[:, 122:128] > 0) & (out[:, 122:128] < 100)).any()
    assert any("sacrum" in r.get("reason", "") for r in log)


def test_vertebra_cut_by_the_inferior_edge_below_the_lowest_disc_stays():
    classes, expected = _with_bottom(10, *spine())  # reaches the inferior edge: a vertebra cut by the field of view
    out = run(classes)
    assert vertebra_labels(out) == [1, 2, 3, 4, 5]
    assert set(np.unique(out[2:14, 122:132, 8:38])) == {1}


def test_chain_whose_discs_lie_out_of_line_is_kept_without_a_crash():
    """Three discs of one chain, each 40 mm in front of or behind the next: the in-line chain keeps one
    disc and, without a canal, gives no band to judge by; everything is kept instead of a crash."""
    classes = np.zeros((12, 150, 140), dtype=np.uint8)
    for i in range(4):
        classes[2:10, 8 + 34 * i : 34 + 34 * i, 10:130] = VERTEBRA
    for i, front in enumerate((10, 50, 90)):
        classes[2:10, 34 + 34 * i : 42 + 34 * i, front : front + 30] = DISC
    out = run(classes, spacing=(2.0, 1.0, 1.0))
    assert vertebra_labels(out) == [1, 2, 3, 4]
    assert sorted(int(v) for v in np.unique(out) if v > 200) == [202, 203, 204]  # between the four vertebrae


def test_merges_are_transitive():
    """X joins L (one disc touched from the same side), then L joins U (no disc between them): X goes with L."""
    from algorithm.postprocess.bodies import body_profiles, merge_and_split_bodies
    from algorithm.postprocess.parts import Band

    verts = np.zeros((4, 150, 30), np.uint16)
    verts[:, 0:20] = 7  # a whole body above, 20 mm
    verts[:, 25:37] = 1  # U, the upper 60 % of a body
    verts[:3, 38:45], verts[3:, 38:45] = 2, 3  # its lower 40 % in two pieces, left (L, the larger) and right (X)
    for i, v in enumerate((4, 5, 6)):  # three whole bodies below, with gaps (discs) between them
        verts[:, 55 + 30 * i : 75 + 30 * i] = v
    sp = np.array([1.0, 1.0, 1.0])
    band = Band(np.array([0.0, 150.0]), np.zeros(2), np.full(2, 30.0), 1.5, 0.0, 150.0)
    between = {frozenset(p) for p in ((7, 1), (2, 4), (3, 4), (4, 5), (5, 6))}
    out, merges = merge_and_split_bodies(verts, 8, body_profiles(verts, range(1, 8), band, sp), [{2, 3}], between, sp, [])
    assert len(np.unique(out[verts > 0])) == 5
    assert len(set(np.unique(out[(verts >= 1) & (verts <= 3)]))) == 1


def test_a_vertebra_made_only_of_small_pieces_leaves_no_gap_in_the_numbers():
    """The lowest vertebra, cut to 5 mm by the field of view and bridged to the one above through their
    disc, is one component with it; split off, it is below the minimum volume and goes before numbering."""
    classes, _ = spine()
    y = 10 + 28 * 3  # the lowest vertebra's top row
    cut = np.ascontiguousarray(classes[:, : y + 5])
    cut[7:9, y - 8 : y, 20:23] = VERTEBRA
    out = run(cut, min_component_mm3=5000)
    assert [int(v) for v in np.unique(out) if v and v != 100] == [1, 2, 3, 201, 202, 203]
