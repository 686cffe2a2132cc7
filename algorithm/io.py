"""Reading and writing volumes, with every kind of bad input turned into one clear InputError."""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd")
MIN_SPACING_MM, MAX_SPACING_MM = 0.05, 20.0
MIN_SLICES, MIN_INPLANE = 1, 16
ORIGIN_TOL_MM, SPACING_RTOL, DIRECTION_TOL = 1e-2, 1e-4, 1e-4


class InputError(Exception):
    """A problem with an input file, reported to the user as one line."""


def is_volume_file(path: Path) -> bool:
    """True if ``path`` has one of the image suffixes this tool reads."""
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def stem(path: Path) -> str:
    """File name without its image suffix (``x.nii.gz`` -> ``x``)."""
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_image(path: str | Path):
    """Read a 3D scalar image with SimpleITK; raise InputError for anything unusable."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayViewFromImage(image)  # forces the pixel data to be read
    except RuntimeError as err:
        raise InputError(f"{path}: cannot read image, corrupt or unsupported file ({_reason(err)})") from None
    check_image(image, array, path)
    return image


def _reason(err: Exception) -> str:
    """The informative line of a SimpleITK error: no location, no ITK object id, and no stale
    'Reason: <errno text>' line (ITK reports a truncated file as 'No such file or directory')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith(("Exception thrown", "Reason:"))]
    detail = re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-fA-F]+\): |sitk::ERROR: )", "", lines[-1] if lines else "unreadable")
    return detail[:160]


def check_image(image, array: np.ndarray, path: str | Path) -> None:
    """Reject images that cannot be a sagittal MR volume."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: vector image with {image.GetNumberOfComponentsPerPixel()} components, expected a scalar volume")
    if image.GetDimension() != 3:
        raise InputError(f"{path}: {image.GetDimension()}D image, expected a 3D volume")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"{path}: unsupported pixel type {image.GetPixelIDTypeAsString()}")
    size = image.GetSize()
    if min(sorted(size)[1:]) < MIN_INPLANE or min(size) < MIN_SLICES:
        raise InputError(f"{path}: volume of size {size} is too small to segment")
    spacing = image.GetSpacing()
    if not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in spacing):
        raise InputError(f"{path}: voxel spacing {tuple(round(s, 4) for s in spacing)} mm is outside {MIN_SPACING_MM}-{MAX_SPACING_MM} mm")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1) > 1e-3:
        raise InputError(f"{path}: invalid direction cosines")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise InputError(f"{path}: image contains NaN or infinite values")


def write_image(array: np.ndarray, reference, path: str | Path) -> Path:
    """Write ``array`` (k, j, i order) on ``reference``'s grid as compressed .mha, atomically:
    the file appears complete or not at all."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    path = Path(path)
    suffix = next((sfx for sfx in SUFFIXES if path.name.lower().endswith(sfx)), path.suffix or ".mha")
    with atomic_path(path, suffix) as tmp:
        sitk.WriteImage(image, tmp, useCompression=True)
    return path


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically: it appears complete or not at all."""
    path = Path(path)
    with atomic_path(path, path.suffix) as tmp:
        Path(tmp).write_text(text)
    return path


@contextmanager
def atomic_path(path: Path, suffix: str) -> Iterator[str]:
    """A temporary file name beside ``path`` (hidden, ``.partial-*``) to write to; moved onto
    ``path`` when the block ends without an exception, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".partial-", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def grid_differences(image, mask) -> list[str]:
    """Which parts of the voxel grid (size, spacing, origin, direction) differ between two images."""
    diffs = []
    if image.GetSize() != mask.GetSize():
        diffs.append(f"size {image.GetSize()} vs {mask.GetSize()}")
    if not np.allclose(image.GetSpacing(), mask.GetSpacing(), rtol=SPACING_RTOL, atol=0):
        diffs.append(f"spacing {_rounded(image.GetSpacing())} vs {_rounded(mask.GetSpacing())}")
    if not np.allclose(image.GetOrigin(), mask.GetOrigin(), rtol=0, atol=ORIGIN_TOL_MM):
        diffs.append(f"origin {_rounded(image.GetOrigin())} vs {_rounded(mask.GetOrigin())}")
    if not np.allclose(image.GetDirection(), mask.GetDirection(), rtol=0, atol=DIRECTION_TOL):
        diffs.append("direction cosines differ")
    return diffs


def _rounded(values) -> tuple:
    return tuple(round(float(v), 3) for v in values)
