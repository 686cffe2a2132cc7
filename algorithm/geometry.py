"""Orientation: bring any SPIDER volume into one canonical array layout and back.

Canonical numpy layout (axis 0, 1, 2) = (right -> left, superior -> inferior, anterior ->
posterior): axis 0 indexes sagittal slices, and each slice shows the patient upright with
anterior on the left, as radiologists view a sagittal image. The mapping is found from the
direction cosines of the ITK image (LPS physical space), never from the axis order.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

# For each canonical axis: the LPS physical axis it follows and the sign of that direction.
# L-R: +x (towards left); S-I: -z (towards inferior); A-P: +y (towards posterior).
_CANONICAL = ((0, 1.0), (2, -1.0), (1, 1.0))
PLANE_NORMAL_TO = ("sagittal", "coronal", "axial")  # the plane whose slices are stacked along LPS x, y, z
SLICE_RATIO = 1.5  # how much coarser than left-right an axis must be to make a series non-sagittal


@dataclass(frozen=True)
class Orientation:
    """How to go from a SimpleITK array (k, j, i order) to the canonical layout and back."""

    axes: tuple[int, int, int]  # numpy axis of the input array for each canonical axis
    flips: tuple[bool, bool, bool]  # whether each canonical axis is reversed
    spacing: tuple[float, float, float]  # canonical voxel spacing in mm

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """Reorder an input-grid array (k, j, i) into the canonical layout (a view)."""
        out = np.transpose(array, self.axes)
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        return out

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Inverse of to_canonical: back to the input grid's (k, j, i) array order."""
        for axis, flip in enumerate(self.flips):
            if flip:
                array = np.flip(array, axis)
        return np.ascontiguousarray(np.transpose(array, np.argsort(self.axes)))


def physical_axes(direction: tuple[float, ...] | np.ndarray) -> tuple[int, int, int]:
    """The LPS axis (0 = x left, 1 = y posterior, 2 = z superior) each ITK axis is most aligned
    with: the permutation that maximises total alignment, so oblique scans map to their nearest axes."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    return max(permutations(range(3)), key=lambda p: sum(abs(d[p[c], c]) for c in range(3)))


def non_sagittal_plane(direction: tuple[float, ...] | np.ndarray, spacing: tuple[float, ...]) -> str | None:
    """The plane, "axial" or "coronal", a series is sliced in when that plane is not sagittal;
    None when it can be segmented sagittally.

    A series is sliced across its coarsest axis; where that axis is at least ``SLICE_RATIO`` times
    coarser than the left-right axis and runs superior-inferior (axial) or anterior-posterior
    (coronal), sagittal slices of it would be coarse staircases. Sagittal stacks, with the sagittal
    axis first or last in ITK order, have their coarsest axis left-right; near-isotropic volumes
    (3D acquisitions resampled alike in every plane) are accepted whatever their orientation."""
    phys = physical_axes(direction)
    spacing = np.asarray(spacing, dtype=float)
    coarsest = int(np.argmax(spacing))
    if spacing[coarsest] < SLICE_RATIO * spacing[phys.index(0)]:
        return None
    return PLANE_NORMAL_TO[phys[coarsest]]


def orientation(direction: tuple[float, ...] | np.ndarray, spacing: tuple[float, ...]) -> Orientation:
    """Orientation of a 3D ITK image from its direction cosines and spacing (ITK i, j, k order).

    Each ITK axis is assigned to the physical axis it is most aligned with (``physical_axes``).
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)  # column c = ITK axis c in LPS
    phys_of_itk = dict(enumerate(physical_axes(d)))
    itk_of_phys = {p: c for c, p in phys_of_itk.items()}
    axes, flips, out_spacing = [], [], []
    for phys, sign in _CANONICAL:
        itk_axis = itk_of_phys[phys]
        axes.append(2 - itk_axis)  # SimpleITK arrays are (k, j, i)
        flips.append(bool(np.sign(d[phys, itk_axis]) != sign))
        out_spacing.append(float(spacing[itk_axis]))
    return Orientation(tuple(axes), tuple(flips), tuple(out_spacing))


def header_orientation(path) -> tuple[Orientation, tuple[int, ...]]:
    """A volume file's orientation and ITK size from its header alone (no pixel read); SimpleITK's
    RuntimeError where the header is unreadable."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return orientation(reader.GetDirection(), reader.GetSpacing()), reader.GetSize()


def canonical_array(image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 3D SimpleITK image's voxels in the canonical layout (a contiguous copy), with the canonical spacing."""
    import SimpleITK as sitk

    orient = orientation(image.GetDirection(), image.GetSpacing())
    return np.ascontiguousarray(orient.to_canonical(sitk.GetArrayFromImage(image))), orient.spacing


def canonical_to_lps(index: np.ndarray, orient: Orientation, image) -> np.ndarray:
    """Canonical voxel indices (N, 3), possibly fractional, of a SimpleITK image's canonical array ->
    physical LPS positions in mm (N, 3), by the image's origin, spacing and direction cosines."""
    index = np.atleast_2d(np.asarray(index, dtype=float))
    size_kji = image.GetSize()[::-1]  # numpy (k, j, i) shape of the input array
    kji = np.zeros_like(index)
    for axis, (source, flip) in enumerate(zip(orient.axes, orient.flips)):
        kji[:, source] = size_kji[source] - 1 - index[:, axis] if flip else index[:, axis]
    ijk = kji[:, ::-1] * np.asarray(image.GetSpacing())
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return np.asarray(image.GetOrigin()) + ijk @ direction.T
