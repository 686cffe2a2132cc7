"""The coarse grid of about P.coarse_mm that the seed and column work runs on: pooling, sampling,
cell centres in mm, and boxes grown around a piece."""

from __future__ import annotations

import math

import numpy as np

from .params import P


def coarse_factors(spacing: tuple[float, ...]) -> tuple[int, ...]:
    """Voxels per coarse cell along each axis: cells of about P.coarse_mm."""
    return tuple(max(1, round(P.coarse_mm / s)) for s in spacing)


def bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box holding every True voxel, or None."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not len(hit):
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def pool(mask: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Fraction of each factors-sized block that is True (the grid padded with False)."""
    padded = np.pad(mask, [(0, -n % f) for n, f in zip(mask.shape, factors)])
    shape = [v for n, f in zip(padded.shape, factors) for v in (n // f, f)]
    return padded.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)


def upsample(coarse: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Repeat each coarse cell factors times and crop to shape."""
    for axis, f in enumerate(factors):
        coarse = np.repeat(coarse, f, axis=axis)
    return coarse[tuple(slice(0, n) for n in shape)]


def cell_mm(index: np.ndarray, factors, spacing) -> np.ndarray:
    """Coarse cell indices (..., 3), or along one axis with scalar factors and spacing -> centres in mm."""
    f = np.asarray(factors)
    return (index * f + (f - 1) / 2) * np.asarray(spacing)


def to_cell(mm: np.ndarray, factors: tuple[int, ...], spacing: tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Position in mm -> coarse cell index clipped to the grid."""
    cell = np.floor(mm / np.asarray(spacing) / np.asarray(factors)).astype(int)
    return np.clip(cell, 0, np.asarray(shape) - 1)


def sample(array: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The centre voxel of each coarse cell (zero where a last, partial cell has none)."""
    sampled = array[tuple(slice(f // 2, None, f) for f in factors)]
    out = np.zeros(shape, dtype=array.dtype)
    out[tuple(slice(0, n) for n in sampled.shape)] = sampled
    return out


def max3(array: np.ndarray, axes: list[int]) -> np.ndarray:
    """Maximum over each cell and its two neighbours along each of ``axes`` (the edge has no outside);
    the same as scipy's maximum_filter of size 3 on those axes, several times faster."""
    out = array.copy()
    for axis in axes:
        low = tuple(slice(None, -1) if a == axis else slice(None) for a in range(array.ndim))
        high = tuple(slice(1, None) if a == axis else slice(None) for a in range(array.ndim))
        grown = out.copy()
        np.maximum(grown[high], out[low], out=grown[high])
        np.maximum(grown[low], out[high], out=grown[low])
        out = grown
    return out


def reach_cells(mm: float, coarse_mm, margin: int = 1) -> list[int]:
    """Cells per axis that cover ``mm`` on a grid of ``coarse_mm`` cells, plus ``margin`` cells: how far to
    grow a box so that it holds everything within ``mm`` of it."""
    return [int(math.ceil(mm / c)) + margin for c in coarse_mm]


def grow_box(box: tuple[slice, ...], reach, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A box grown by ``reach`` cells (one number per axis) on each side, clipped to ``shape``."""
    return tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(box, reach, shape))


def cell_index(mm, factor, spacing):
    """Position in mm along one axis -> fractional coarse cell index (the inverse of cell_mm)."""
    return (np.asarray(mm) / spacing - (factor - 1) / 2) / factor
