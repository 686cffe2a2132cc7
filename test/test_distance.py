"""Distance maps in mm (algorithm.distance) against brute force on small synthetic arrays."""

import numpy as np
import pytest

from algorithm.distance import distance_mm, nearest_label

SPACING = (3.3, 0.7, 0.9)


def brute(labels: np.ndarray, spacing, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and label of, the nearest labelled cell (ties: lowest label), by trying every cell."""
    cells = np.argwhere(labels > 0)
    values = labels[tuple(cells.T)]
    dist = np.sqrt(((((points[:, None, :] - cells[None]) * np.asarray(spacing)) ** 2).sum(-1)))
    best = dist.min(axis=1)
    nearest = np.array([values[d <= b + 1e-6].min() for d, b in zip(dist, best)])
    return best, nearest


def blobs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    for k in range(1, n + 1):
        corner = [rng.integers(0, s) for s in shape]
        labels[tuple(slice(c, c + int(rng.integers(1, 4))) for c in corner)] = k
    return labels


@pytest.mark.parametrize("shape", [(6, 20, 18), (1, 25, 30)])
def test_distance_mm_is_exact(shape):
    labels = blobs(shape, 5, seed=1)
    dist = distance_mm(labels > 0, SPACING)
    expected, _ = brute(labels, SPACING, np.argwhere(np.ones(shape, dtype=bool)))
    assert dist.dtype == np.float32 and dist.shape == shape
    np.testing.assert_allclose(dist.ravel(), expected, rtol=1e-6, atol=1e-5)


def test_distance_mm_without_features_is_inf():
    assert np.isinf(distance_mm(np.zeros((3, 4, 5), dtype=bool), SPACING)).all()


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_nearest_label_matches_brute_force_ties_to_the_lowest(seed):
    labels = blobs((5, 16, 16), 6, seed)
    points = np.argwhere(labels == 0)
    _, expected = brute(labels, SPACING, points)
    reach = distance_mm(labels > 0, SPACING)[tuple(points.T)]
    np.testing.assert_array_equal(nearest_label(labels, SPACING, points), expected)
    np.testing.assert_array_equal(nearest_label(labels, SPACING, points, reach), expected)


def test_nearest_label_equidistant_cell_takes_the_lower_label():
    labels = np.zeros((1, 1, 5), dtype=np.uint8)
    labels[0, 0, 0], labels[0, 0, 4] = 9, 4
    assert nearest_label(labels, (1.0, 1.0, 1.0), np.array([[0, 0, 2], [0, 0, 1], [0, 0, 3]])).tolist() == [4, 9, 4]


def test_nearest_label_without_labels_is_zero():
    assert nearest_label(np.zeros((2, 3, 4), dtype=np.uint16), SPACING, np.array([[0, 1, 2]])).tolist() == [0]
