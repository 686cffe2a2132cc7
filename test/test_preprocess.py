"""The shared preprocessing: normalisation and in-plane resampling, on small synthetic arrays."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from algorithm.config import Config
from algorithm.preprocess import as_float32, normalize, preprocess, resample_inplane

CONFIG = Config()


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
def test_normalize_works_in_float32_and_leaves_its_input_alone(dtype):
    volume = (np.random.default_rng(0).random((6, 40, 30)) * 200).astype(dtype)
    before = volume.copy()
    out = normalize(volume, CONFIG)
    assert out.dtype == np.float32  # no float64 detour (twice the memory and time)
    assert np.array_equal(volume, before)
    assert abs(float(out.mean())) < 1e-4 and abs(float(out.std()) - 1) < 1e-4


@pytest.mark.parametrize("axes", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
@pytest.mark.parametrize("flip", [False, True])
def test_as_float32_of_any_reordered_view_is_a_c_contiguous_exact_copy(axes, flip):
    source = np.random.default_rng(3).integers(-500, 3000, (23, 41, 37)).astype(np.int16)
    view = np.transpose(source, axes)  # the canonical layout of a file in another axis order
    view = view[:, ::-1] if flip else view
    out = as_float32(view, block=8)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, view.astype(np.float32))


def test_normalize_std_is_exact_on_a_large_volume():
    # one float32 dot product over tens of millions of values drifts by about 1e-4; the chunked sum does not
    volume = np.random.default_rng(4).normal(100.0, 30.0, (40, 512, 512)).astype(np.float32)
    volume[0, 0, :2] = volume.min(), volume.max()  # in the first slice, so clipping at 0 and 100 % changes nothing
    out = normalize(volume, Config(clip_percentiles=(0.0, 100.0)))
    centred = volume.astype(np.float64) - volume.astype(np.float64).mean()
    expected = centred / centred.std()
    assert np.abs(out - expected).max() < 1e-5


def test_normalize_of_a_constant_volume_is_zero():
    assert not normalize(np.full((2, 5, 5), 7, np.int16), CONFIG).any()


@pytest.mark.parametrize("order", [0, 1])
def test_resample_matches_scipy_zoom_in_grid_mode(order):
    volume = np.random.default_rng(1).random((3, 37, 29)).astype(np.float32)
    ours = resample_inplane(volume, (50, 21), order)
    scipy = ndimage.zoom(volume, (1, 50 / 37, 21 / 29), order=order, grid_mode=True, mode="nearest")
    assert ours.dtype == np.float32 and ours.shape == scipy.shape
    assert np.allclose(ours, scipy, atol=1e-5)


def test_preprocess_returns_float32_at_the_model_spacing():
    volume = np.random.default_rng(2).integers(0, 1000, (4, 60, 90)).astype(np.int16)
    out = preprocess(volume, (4.0, 0.5, 0.5), CONFIG)
    assert out.dtype == np.float32 and out.shape == (4, 40, 60)
