"""Preprocessing shared by training and inference: in-plane resampling, intensity
normalisation and 2.5D context. Arrays are in the canonical layout (see geometry.py)."""

from __future__ import annotations

import math

import numpy as np

from algorithm.config import Config

SUM_CHUNK = 1 << 18


def _source(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinate of each output pixel centre when ``n_in`` pixels are resampled to
    ``n_out`` over the same extent (pixel-area aligned), clamped to the input."""
    return np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)


def resample_inplane(volume: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resample the last two axes of (..., H, W) to ``shape``: nearest (order 0) or linear
    (order 1, in float32) on pixel-area aligned grids, separably, one axis after the other. Matches
    ``scipy.ndimage.zoom(..., grid_mode=True, mode="nearest")`` at several times its speed."""
    if order not in (0, 1):
        raise ValueError("order must be 0 or 1")
    if order == 1 and volume.dtype != np.float32:
        volume = volume.astype(np.float32)
    for axis, n_out in ((-2, shape[0]), (-1, shape[1])):
        n_in = volume.shape[axis]
        if n_in == n_out:
            continue
        src = _source(n_in, n_out)
        if order == 0:
            volume = np.take(volume, np.floor(src + 0.5).astype(np.intp), axis=axis)
            continue
        lo = np.floor(src).astype(np.intp)
        weight = (src - lo).astype(np.float32)
        first = np.take(volume, lo, axis=axis)
        step = np.take(volume, np.minimum(lo + 1, n_in - 1), axis=axis)
        step -= first  # in place: first + (next - first) * weight, without temporaries
        step *= weight[:, None] if axis == -2 else weight
        step += first
        volume = step
    return volume


def model_shape(shape: tuple[int, int], spacing: tuple[float, float], config: Config) -> tuple[int, int]:
    """In-plane shape of a slice of ``shape`` at ``spacing`` mm once resampled to the model's spacing."""
    return tuple(max(1, int(round(n * s / config.spacing))) for n, s in zip(shape, spacing))


def as_float32(volume: np.ndarray, block: int = 16) -> np.ndarray:
    """A C-contiguous float32 copy of ``volume``. A reordered view (the canonical layout of a file
    whose sagittal axis is not its first) is copied in tiles of its fastest memory axis and its
    last axis, so that reads and writes both stay in cache: several times faster than one
    strided copy."""
    fastest = int(np.argmin(np.abs(volume.strides)))
    last = volume.ndim - 1
    if volume.flags.c_contiguous or fastest == last or volume.shape[fastest] <= block:
        return volume.astype(np.float32, order="C")
    out = np.empty(volume.shape, dtype=np.float32)
    for i in range(0, volume.shape[fastest], block):
        for j in range(0, volume.shape[last], block):
            tile = [slice(None)] * volume.ndim
            tile[fastest], tile[last] = slice(i, i + block), slice(j, j + block)
            out[tuple(tile)] = volume[tuple(tile)]
    return out


def normalize(volume: np.ndarray, config: Config) -> np.ndarray:
    """Clip to robust percentiles, then z-score: works for int16 and 8-bit data alike."""
    volume = as_float32(volume)  # a copy: the in-place steps below leave the input alone
    lo, hi = np.percentile(volume[:: max(1, volume.shape[0] // 8)], config.clip_percentiles)
    np.clip(volume, lo, hi, out=volume)
    volume -= float(volume.mean())
    flat = volume.reshape(-1)
    # Sum of squares by float32 dot products over chunks, added in float64: no temporary (unlike
    # volume.std()) and as accurate as it (one dot over the whole volume is not).
    squares = sum(float(np.dot(c, c)) for c in (flat[i : i + SUM_CHUNK] for i in range(0, flat.size, SUM_CHUNK)))
    std = math.sqrt(squares / max(flat.size, 1))
    if std < 1e-6:
        volume[...] = 0
        return volume
    volume /= std
    return volume


def preprocess(volume: np.ndarray, spacing: tuple[float, float, float], config: Config) -> np.ndarray:
    """Canonical image volume (N, H, W) -> normalised float32 volume at the model's in-plane spacing."""
    shape = model_shape(volume.shape[1:], spacing[1:], config)
    return resample_inplane(normalize(volume, config), shape, order=1).astype(np.float32, copy=False)


def context_positions(n_slices: int, index: int, slice_spacing: float, config: Config) -> np.ndarray:
    """Fractional slice positions of the 2.5D input channels of slice ``index``, clamped to the volume."""
    offsets = np.arange(-config.context, config.context + 1) * (config.context_mm / slice_spacing)
    return np.clip(index + offsets, 0, n_slices - 1)


def context_weights(n_slices: int, index: int, slice_spacing: float, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, w), one per channel: the 2.5D channels of slice ``index`` are
    ``(1 - w) * volume[lo] + w * volume[hi]`` (w float32)."""
    pos = context_positions(n_slices, index, slice_spacing, config)
    lo = np.floor(pos).astype(np.int64)
    return lo, np.minimum(lo + 1, n_slices - 1), (pos - lo).astype(np.float32)


def context_slices(volume: np.ndarray, index: int, slice_spacing: float, config: Config) -> np.ndarray:
    """Channels (C, H, W) for slice ``index``: itself and neighbours ``context_mm`` apart,
    linearly interpolated along the sagittal axis so that thick and thin slices look alike."""
    lo, hi, w = context_weights(volume.shape[0], index, slice_spacing, config)
    w = w[:, None, None]
    return (1 - w) * volume[lo] + w * volume[hi]


def padding(shape: tuple[int, ...], divisor: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom/right of the last two axes of ``shape`` to reach multiples of ``divisor``."""
    return -shape[-2] % divisor, -shape[-1] % divisor


def pad_to_multiple(batch: np.ndarray, divisor: int, value: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes at the bottom/right up to multiples of ``divisor``; return the
    padded array and the original (H, W) to crop back to."""
    h, w = batch.shape[-2:]
    ph, pw = padding(batch.shape, divisor)
    if ph or pw:
        pad = [(0, 0)] * (batch.ndim - 2) + [(0, ph), (0, pw)]
        batch = np.pad(batch, pad, constant_values=value)
    return batch, (h, w)
