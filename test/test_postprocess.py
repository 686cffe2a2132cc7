"""Post-processing: class map -> SPIDER instances, on small synthetic spines and on real masks."""

from __future__ import annotations

import numpy as np
import pytest

from algorithm.config import Config
from algorithm.labels import CANAL, DISC, VERTEBRA, to_classes
from algorithm.postprocess import number_structures, postprocess

SPACING = (2.0, 1.0, 1.0)  # mm: sagittal slices, superior->inferior, anterior->posterior
LEVELS = 4


def spine(levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """A box phantom (classes, expected labels): bodies with discs below, pedicles, laminae, a canal."""
    classes = np.zeros((16, 20 + 28 * levels, 70), dtype=np.uint8)
    expected = np.zeros(classes.shape, dtype=np.int16)
    for i in range(levels):  # i = 0 is the top vertebra
        k, y = levels - i, 10 + 28 * i
        parts = [
            (slice(2, 14), slice(y, y + 20), slice(8, 38)),  # body
            (slice(2, 5), slice(y + 2, y + 10), slice(38, 56)),  # pedicles beside the canal
            (slice(11, 14), slice(y + 2, y + 10), slice(38, 56)),
            (slice(2, 14), slice(y + 4, y + 18), slice(53, 64)),  # lamina and spinous process
        ]
        for part in parts:
            classes[part], expected[part] = VERTEBRA, k
        disc = (slice(2, 14), slice(y + 20, y + 28), slice(8, 38))
        classes[disc], expected[disc] = DISC, 200 + k
    canal = (slice(5, 11), slice(5, classes.shape[1] - 5), slice(42, 52))
    classes[canal], expected[canal] = CANAL, 100
    return classes, expected


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def run(classes: np.ndarray, spacing=SPACING, **config) -> np.ndarray:
    out = postprocess(classes, spacing, Config(**config))
    assert out.dtype == np.int16 and out.shape == classes.shape
    return out


def vertebra_labels(out: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(out) if 0 < v < 100]


def assert_split(classes: np.ndarray, expected: np.ndarray, min_dice: float) -> None:
    out = run(classes)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    for k in (2, 3):
        assert dice(out == k, expected == k) > min_dice


def test_clean_spine_numbered_bottom_up_with_discs_below():
    classes, expected = spine()
    out = run(classes)
    np.testing.assert_array_equal(out, expected)
    assert vertebra_labels(out) == [1, 2, 3, 4]


def test_thin_bridge_through_disc_is_split():
    classes, expected = spine()
    y = 10 + 28 + 20  # disc below the second vertebra from the top
    classes[7:9, y : y + 8, 20:23] = VERTEBRA  # a few voxels bridge the two bodies
    assert_split(classes, expected, 0.97)


def test_half_missing_disc_is_split_by_disc_plane():
    classes, expected = spine()
    y = 10 + 28 + 20
    classes[2:8, y : y + 8, 8:38] = VERTEBRA  # half the disc predicted as bone: a thick bridge
    assert_split(classes, expected, 0.9)


def test_neighbouring_posterior_elements_touching_go_to_their_own_body():
    classes, expected = spine()
    for i in range(LEVELS - 1):  # close the gap between each lamina and the next one down
        y = 10 + 28 * i
        classes[2:14, y + 18 : y + 32, 58:64] = VERTEBRA
    out = run(classes)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    for k in range(1, LEVELS + 1):
        assert dice(out == k, expected == k) > 0.9


def test_lateral_fragment_is_attached_to_its_vertebra():
    classes, expected = spine()
    y = 10 + 28 * 2
    classes[0, y + 6 : y + 14, 54:62] = VERTEBRA  # a facet in the outermost slice, not touching
    out = run(classes)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    assert set(np.unique(out[0, y + 6 : y + 14, 54:62])) == {2}


def test_arches_cut_off_in_a_midline_slab_join_the_body_at_their_height():
    classes, expected = spine()
    classes[:, :, 38:53][classes[:, :, 38:53] == VERTEBRA] = 0  # no pedicles: arches 15 mm behind the bodies
    out = run(classes)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    arches = np.zeros(classes.shape, dtype=bool)
    arches[:, :, 53:] = classes[:, :, 53:] == VERTEBRA
    np.testing.assert_array_equal(out[arches], expected[arches])


def test_small_blobs_removed_by_volume_in_mm3():
    classes = np.zeros((20, 20, 40), dtype=np.uint8)
    classes[2:12, 2:12, 2:12] = DISC  # 1000 voxels
    classes[15:18, 15:18, 30:33] = DISC  # 27 voxels, far away
    assert len(np.unique(run(classes, spacing=(1.0, 1.0, 1.0), min_component_mm3=100))) == 2  # 27 mm3: gone
    assert len(np.unique(run(classes, spacing=(2.0, 2.0, 2.0), min_component_mm3=100))) == 3  # 216 mm3: kept


def test_canal_is_100_and_stray_canal_blobs_dropped():
    classes, expected = spine()
    classes[1, 2:4, 66:68] = CANAL
    out = run(classes)
    np.testing.assert_array_equal(out == 100, expected == 100)


def test_empty_input_gives_empty_output():
    out = run(np.zeros((5, 30, 20), dtype=np.uint8))
    assert not out.any()


@pytest.mark.parametrize("cls, label", [(VERTEBRA, 1), (DISC, 201), (CANAL, 100)])
def test_single_class_inputs(cls, label):
    out = run(np.full((6, 30, 20), cls, dtype=np.uint8))
    assert set(np.unique(out)) == {label}


def test_numbering_unique_and_bounded():
    # 30 vertebrae in a column with a disc below each, two discs above the top, two under the lowest
    verts = np.zeros((1, 30 * 4 + 12, 1), dtype=np.uint16)
    discs = np.zeros_like(verts)
    for i in range(30):
        verts[0, 12 + 4 * i : 14 + 4 * i] = i + 1
        discs[0, 14 + 4 * i] = i + 1
    discs[0, 2], discs[0, 6], discs[0, 15 + 4 * 29] = 31, 32, 33
    out = number_structures(verts, discs, row_mm=4.0)  # rows of 4 mm: the discs lie 16 mm apart, each a level of its own
    for ids in (verts, discs):
        for i in np.unique(ids[ids > 0]):
            assert len(np.unique(out[ids == i])) == 1
    kept_v = [int(out[verts == i][0]) for i in range(1, 31) if out[verts == i][0]]
    kept_d = [int(out[discs == i][0]) for i in range(1, 34) if out[discs == i][0]]
    assert len(kept_v) == 25 and sorted(kept_v, reverse=True) == kept_v == list(range(25, 0, -1))
    assert len(set(kept_d)) == len(kept_d) and max(kept_d) <= 225 and min(kept_d) >= 201
    lowest = max(i for i in range(1, 31) if out[verts == i][0])
    assert out[discs == lowest][0] == 201  # the disc directly below the lowest kept vertebra


def test_real_masks_reproduce_instances():
    from conftest import shared_data

    sitk = pytest.importorskip("SimpleITK")
    from algorithm.geometry import orientation

    folder = shared_data("spider-t2space") / "masks"
    for case in ("18_t2_SPACE", "50_t2_SPACE"):
        image = sitk.ReadImage(str(folder / f"{case}.mha"))
        orient = orientation(image.GetDirection(), image.GetSpacing())
        ref = orient.to_canonical(sitk.GetArrayFromImage(image))
        out = run(np.ascontiguousarray(to_classes(ref)), spacing=orient.spacing)
        for value in np.unique(ref[ref > 0]):
            hit = out[ref == value]
            best = np.bincount(hit[hit > 0]).argmax()
            assert dice(out == best, ref == value) > 0.8, (case, value)
            assert best == value, (case, value)  # these files number bottom-up, as postprocess does


def test_blob_in_soft_tissue_is_removed_and_recorded():
    classes, expected = spine()
    classes = np.pad(classes, ((0, 0), (0, 0), (30, 80)))  # 30 mm more in front, 80 mm behind
    classes[4:12, 60:80, 0:6] = VERTEBRA  # bowel, 30 mm in front of the bodies
    classes[4:12, 20:40, 170:175] = VERTEBRA  # skin, 70 mm behind the spinous processes
    log: list[dict] = []
    out = postprocess(classes, SPACING, Config(), log)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    assert not out[4:12, 60:80, 0:6].any() and not out[4:12, 20:40, 170:175].any()
    dropped = sorted((r for r in log if r["action"] == "dropped" and r["class"] == "vertebra"), key=lambda r: r["centre_mm"][2])
    assert len(dropped) == 2
    for record, centre, ml in zip(dropped, ((15.0, 69.5, 2.5), (15.0, 29.5, 172.0)), (8 * 20 * 6 * 2 / 1000, 8 * 20 * 5 * 2 / 1000)):
        assert np.allclose(record["centre_mm"], centre, atol=2.0) and abs(record["volume_ml"] - ml) < 0.3 * ml


def test_fused_bodies_are_split_at_their_disc():
    classes, expected = spine()
    y = 10 + 28 + 20  # the disc below the second vertebra from the top, predicted as bone
    classes[classes == DISC] = DISC
    classes[2:14, y : y + 8, 8:38] = VERTEBRA
    out = run(classes)
    assert vertebra_labels(out) == [1, 2, 3, 4]
    for k in (1, 4):
        assert dice(out == k, expected == k) > 0.9
    for k in (2, 3):  # the two fused bodies, cut within the former disc
        assert dice(out == k, expected == k) > 0.7


def test_split_disc_is_merged():
    classes, expected = spine()
    y = 10 + 28 + 20
    classes[2:14, y : y + 8, 22:24] = 0  # a gap splits the disc into a front and a back piece
    out = run(classes)
    values = [int(v) for v in np.unique(out[2:14, y : y + 8, 8:38]) if v > 200]
    assert values == [203]
    assert sorted(int(v) for v in np.unique(out) if v > 200) == [201, 202, 203, 204]


def test_vertebra_cut_by_the_top_of_the_view_gets_a_partial_value():
    classes, expected = spine()
    top = 10 + 8  # the field of view starts inside the top vertebra
    cut, ref = classes[:, top:], expected[:, top:]
    out = run(np.ascontiguousarray(cut), partial_vertebrae=True)
    assert 104 in np.unique(out) and 4 not in np.unique(out)
    assert dice(out == 104, ref == 4) > 0.95
    assert vertebra_labels(run(np.ascontiguousarray(cut))) == [1, 2, 3, 4]  # default: SPIDER's released masks use 1-25


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 0, -1, 1, 0, 0, 0, -1, 0)], ids=["LPS", "PIR"])
def test_numbering_bottom_up_in_lps_and_pir_files(direction):
    sitk = pytest.importorskip("SimpleITK")
    from algorithm.geometry import orientation
    from spider_tools.synthetic import synthesize

    size = (14, 144, 144) if direction[0] else (144, 144, 14)
    spacing = (4.0, 1.5, 1.5) if direction[0] else (1.5, 1.5, 4.0)
    _, mask = synthesize(size, spacing, direction, seed=3)
    orient = orientation(mask.GetDirection(), mask.GetSpacing())
    ref = orient.to_canonical(sitk.GetArrayFromImage(mask))
    out = run(np.ascontiguousarray(to_classes(ref)), spacing=orient.spacing)
    for value in np.unique(ref[(ref > 0) & (ref != 100)]):
        hit = out[ref == value]
        assert np.bincount(hit[hit > 0]).argmax() == value, value  # synthetic masks number bottom-up


@pytest.mark.parametrize("axes", [[0, 1, 2], [1, 2], [0]])
def test_max3_matches_scipy_maximum_filter(axes):
    from scipy import ndimage as ndi

    from algorithm.postprocess.grid import max3

    array = np.random.default_rng(0).integers(0, 9, (7, 11, 13), dtype=np.uint8)
    expected = ndi.maximum_filter(array, size=tuple(3 if a in axes else 1 for a in range(3)))
    np.testing.assert_array_equal(max3(array, axes), expected)


@pytest.mark.parametrize("canal", [True, False], ids=["with canal", "lateral, no canal"])
def test_one_slice_volume_keeps_the_chain_and_drops_a_blob(canal):
    classes, expected = spine()
    classes = np.ascontiguousarray(np.pad(classes, ((0, 0), (0, 0), (30, 0)))[7:8])  # one sagittal slice, 2 mm thick
    if not canal:
        classes[classes == CANAL] = 0
    classes[0, 60:80, 0:6] = VERTEBRA  # bowel 30 mm in front of the bodies
    out = run(classes, spacing=(4.0, 1.0, 1.0))
    assert vertebra_labels(out) == [1, 2, 3, 4]
    assert not out[0, 60:80, 0:6].any()
    assert sorted(int(v) for v in np.unique(out) if v > 200) == [201, 202, 203, 204]
