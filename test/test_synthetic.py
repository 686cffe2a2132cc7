"""The synthetic spine generator: grids, SPIDER labels, anatomy, contrasts, speed, dataset writer."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from algorithm.geometry import orientation
from algorithm.io import read_image
from algorithm.labels import CANAL_LABEL, is_disc, is_valid_label, is_vertebra, numbering_convention
from spider_tools.synthetic import GEOMETRIES, main, signed_permutations, synthesize, synthesize_like, write_spider_dataset

SMALL = {"size": (12, 96, 80), "spacing": (4.0, 2.6, 3.0)}  # L-R 48 mm, A-P 250 mm, S-I 240 mm


def canonical(image: sitk.Image) -> np.ndarray:
    return orientation(image.GetDirection(), image.GetSpacing()).to_canonical(sitk.GetArrayFromImage(image))


def centre(mask: np.ndarray, value: int) -> np.ndarray:
    """Centre of mass (canonical voxel coordinates) of one label."""
    return np.array(ndimage.center_of_mass(mask == value))


@pytest.fixture(scope="module")
def small_t2():
    return synthesize(**SMALL, contrast="t2", seed=3)


def test_grid_and_types(small_t2):
    image, mask = small_t2
    for itk in (image, mask):
        assert itk.GetSize() == SMALL["size"]
        assert itk.GetSpacing() == SMALL["spacing"]
        assert itk.GetOrigin() == (0.0, 0.0, 0.0)
        assert itk.GetDirection() == tuple(np.eye(3).ravel())
        assert itk.GetPixelID() == sitk.sitkInt16
    assert sitk.GetArrayViewFromImage(image).min() >= 0


def test_spider_labels_and_anatomy(small_t2):
    mask = canonical(small_t2[1])
    values = [int(v) for v in np.unique(mask) if v]
    assert np.all(is_valid_label(mask))
    vertebrae = [v for v in values if is_vertebra(v)]
    discs = [v for v in values if is_disc(v)]
    assert CANAL_LABEL in values and len(vertebrae) >= 4 and len(discs) >= 4
    assert vertebrae == list(range(1, len(vertebrae) + 1))  # consecutive from the lowest visible
    assert numbering_convention(mask) == "bottom-up"
    rows = {v: np.flatnonzero((mask == v).any(axis=(0, 2))) for v in values}
    whole = {v for v in values if rows[v][0] > 0 and rows[v][-1] < mask.shape[1] - 1}  # not cut by the view
    for k in vertebrae:  # disc 200+k directly below vertebra k, above vertebra k-1
        if {k, 200 + k} <= whole:
            assert centre(mask, 200 + k)[1] > centre(mask, k)[1]
            if k - 1 in whole:
                assert centre(mask, 200 + k)[1] < centre(mask, k - 1)[1]
    disc_centre = np.mean([centre(mask, d)[2] for d in discs])
    assert centre(mask, CANAL_LABEL)[2] > disc_centre + 5  # canal behind the discs (A-P axis)


def test_posterior_elements_detached_in_lateral_slices():
    """Lateral sagittal slices cut vertebrae into a body and separate posterior pieces."""
    _, mask = synthesize((40, 120, 100), (1.5, 2.0, 2.4), seed=1)
    mask = canonical(mask)
    pieces = max(ndimage.label(mask[s] == 3)[1] for s in range(mask.shape[0]))
    assert pieces >= 2


def test_contrasts():
    def means(contrast):
        image, mask = (canonical(x) for x in synthesize(**SMALL, contrast=contrast, seed=4))
        return {name: float(image[sel(mask)].mean()) for name, sel in (("bone", is_vertebra), ("disc", is_disc), ("canal", lambda m: m == CANAL_LABEL))}

    t1, t2 = means("t1"), means("t2")
    assert t2["canal"] > t2["disc"] and t2["canal"] > 1.5 * t2["bone"]  # T2: fluid bright
    assert t1["bone"] > t1["disc"] and t1["bone"] > 1.5 * t1["canal"]  # T1: marrow bright, fluid dark
    assert t2["disc"] / t2["bone"] > 1.5 * t1["disc"] / t1["bone"]  # discs brighter in T2
    with pytest.raises(ValueError):
        synthesize(**SMALL, contrast="flair")


def test_deterministic_per_seed():
    a = [sitk.GetArrayFromImage(x) for x in synthesize((8, 48, 40), (4.0, 5.0, 6.0), seed=7)]
    b = [sitk.GetArrayFromImage(x) for x in synthesize((8, 48, 40), (4.0, 5.0, 6.0), seed=7)]
    c = sitk.GetArrayFromImage(synthesize((8, 48, 40), (4.0, 5.0, 6.0), seed=8)[0])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c)


def test_synthesize_like_copies_oblique_header():
    reference = sitk.Image(64, 80, 10, sitk.sitkUInt8)  # PIR-like, slightly oblique
    reference.SetSpacing((3.0, 3.1, 4.4))
    reference.SetOrigin((88.2, -114.7, 218.1))
    reference.SetDirection((0.0, 0.0, -1.0, 0.9996, -0.028, 0.0, -0.028, -0.9996, 0.0))
    image, mask = synthesize_like(reference, contrast="t1", seed=2)
    for itk in (image, mask):
        assert itk.GetSize() == reference.GetSize()
        assert itk.GetSpacing() == reference.GetSpacing()
        assert itk.GetOrigin() == reference.GetOrigin()
        assert itk.GetDirection() == reference.GetDirection()
    labels = canonical(mask)
    assert CANAL_LABEL in labels and numbering_convention(labels) == "bottom-up"


def test_geometries():
    assert GEOMETRIES["t2"] == {"size": (15, 384, 384), "spacing": (4.4, 0.73, 0.73)}
    assert GEOMETRIES["t1"] == {"size": (27, 448, 600), "spacing": (3.3, 0.63, 0.47)}
    assert GEOMETRIES["t2_SPACE"] == {"size": (120, 640, 512), "spacing": (0.9, 0.47, 0.47)}


def test_fast_enough():
    start = time.perf_counter()
    image, _ = synthesize(**GEOMETRIES["t2"], contrast="t2")
    seconds = time.perf_counter() - start
    assert image.GetSize() == (15, 384, 384)
    assert seconds < 5.0, f"15x384x384 took {seconds:.1f} s"


def test_signed_permutations():
    directions = signed_permutations()
    assert len(set(directions)) == 48
    for d in directions:
        m = np.asarray(d).reshape(3, 3)
        assert np.array_equal(np.abs(m).sum(0), np.ones(3)) and np.array_equal(np.abs(m).sum(1), np.ones(3))


def test_write_spider_dataset(tmp_path):
    overview = write_spider_dataset(tmp_path / "data", 4, seed=2, max_size=64)
    rows = list(csv.DictReader(overview.open()))
    assert len(rows) == 4 and {"new_file_name", "subset"} <= set(rows[0])
    assert {row["subset"] for row in rows} <= {"training", "validation"}
    permutations = set(signed_permutations())
    for row in rows:
        assert row["new_file_name"].endswith(("_t1", "_t2"))
        image = read_image(tmp_path / "data" / "images" / f"{row['new_file_name']}.mha")
        mask = read_image(tmp_path / "data" / "masks" / f"{row['new_file_name']}.mha")
        assert image.GetSize() == mask.GetSize() and image.GetSpacing() == mask.GetSpacing()
        assert image.GetOrigin() == mask.GetOrigin() and image.GetDirection() == mask.GetDirection()
        assert tuple(image.GetDirection()) in permutations
        spacing = orientation(image.GetDirection(), image.GetSpacing()).spacing
        assert 3.3 <= spacing[0] <= 4.8 and all(0.33 <= s <= 0.9 for s in spacing[1:])
        assert max(image.GetSize()) <= 64
        labels = sitk.GetArrayViewFromImage(mask)
        assert np.all(is_valid_label(labels))
        assert int(row["num_vertebrae"]) == len([v for v in np.unique(labels) if is_vertebra(v)])


def test_cli(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--cases", "2", "--seed", "1", "--max-size", "48"]) == 0
    assert len(list((tmp_path / "out" / "images").glob("*.mha"))) == 2
    assert (tmp_path / "out" / "overview.csv").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "bad"), "--cases", "0"])
    assert exit_info.value.code != 0
