"""Orientation: every signed axis permutation and every real SPIDER header maps to the canonical
layout (R->L, S->I, A->P) and back, and the pipeline writes its output on the input's grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from algorithm.geometry import non_sagittal_plane, orientation, physical_axes
from algorithm.io import read_image
from algorithm.labels import CANAL_LABEL, is_disc, numbering_convention
from spider_tools.synthetic import signed_permutations, synthesize, synthesize_like
from conftest import SHARED_DATA, shared_data

DIRECTIONS = signed_permutations()
# Physical (LPS) unit vector of each canonical axis: to the left, inferior, posterior.
CANONICAL_AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
SHAPE, SPACING = (9, 72, 60), (4.5, 3.5, 4.0)  # canonical grid used for the permuted headers
CORNER = np.array([-20.0, 31.0, 140.0])  # LPS point of canonical voxel (0, 0, 0)
MASK_NAMES = sorted(p.name for p in (SHARED_DATA / "spider-masks").glob("*.mha")) or ["(no real masks)"]
BIG_VOXELS = 8_000_000  # real headers above this are only checked in the slow run
PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
_TILT = np.radians(3.0)
_ROTATE_X = np.array([[1, 0, 0], [0, np.cos(_TILT), -np.sin(_TILT)], [0, np.sin(_TILT), np.cos(_TILT)]])
OBLIQUE = tuple((_ROTATE_X @ np.reshape(PIR, (3, 3))).ravel())  # PIR tilted 3 degrees


def header(direction) -> tuple[tuple, tuple, tuple]:
    """ITK size, spacing and origin that put the canonical grid (SHAPE, SPACING, CORNER) under
    ``direction``, so that every direction describes the same voxels in physical space."""
    d = np.asarray(direction).reshape(3, 3)
    size, spacing, origin = [], [], CORNER.copy()
    for axis in range(3):
        c = int(np.argmax(np.abs(CANONICAL_AXES @ d[:, axis])))
        size.append(SHAPE[c])
        spacing.append(SPACING[c])
        if CANONICAL_AXES[c] @ d[:, axis] < 0:  # ITK index 0 is the canonical far end
            origin += (SHAPE[c] - 1) * SPACING[c] * CANONICAL_AXES[c]
    return tuple(size), tuple(spacing), tuple(origin)


def canonical(image: sitk.Image) -> np.ndarray:
    return orientation(image.GetDirection(), image.GetSpacing()).to_canonical(sitk.GetArrayFromImage(image))


def centres(mask: np.ndarray) -> tuple[dict[int, np.ndarray], set[int]]:
    """Centre of mass (canonical voxel coordinates) of every label, and the labels cut by the
    top or bottom of the volume; on a subsample of big masks."""
    step = max(1, round((mask.size / 4e6) ** (1 / 3)))
    sub = np.ascontiguousarray(mask[::step, ::step, ::step])
    values = [int(v) for v in np.unique(sub) if v]
    com = {v: np.array(c) * step for v, c in zip(values, ndimage.center_of_mass(np.ones(sub.shape, np.uint8), sub, values))}
    boxes = ndimage.find_objects(sub)
    cut = {v for v in values if boxes[v - 1][1].start == 0 or boxes[v - 1][1].stop == sub.shape[1]}
    return com, cut


def check_anatomy(mask: np.ndarray) -> None:
    """Canonical mask: canal behind the discs, disc 200+k below vertebra k, lowest vertebra lowest."""
    com, cut = centres(mask)
    discs = [v for v in com if is_disc(v)]
    vertebrae = [v for v in com if 1 <= v <= 25]
    assert CANAL_LABEL in com and discs and len(vertebrae) >= 2
    assert com[CANAL_LABEL][2] > np.mean([com[d][2] for d in discs]), "canal is not posterior of the discs"
    for k in vertebrae:
        if 200 + k in com and not {k, 200 + k} & cut:
            assert com[200 + k][1] > com[k][1], f"disc {200 + k} is not below vertebra {k}"
    # top-down files end at 24 (24 = lowest); bottom-up files start at 1 (1 = lowest)
    top_down = 1 not in vertebrae and max(vertebrae) == 24
    lowest = max(vertebrae, key=lambda v: com[v][1])
    assert lowest == (max(vertebrae) if top_down else min(vertebrae))
    assert numbering_convention(mask) == ("top-down" if top_down else "bottom-up")


def same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=1e-9)
    assert np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-6)
    assert np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_round_trip_and_canonical_axes(direction):
    size, spacing, origin = header(direction)
    orient = orientation(direction, spacing)
    array = np.random.default_rng(0).random(size[::-1])
    assert np.array_equal(orient.from_canonical(orient.to_canonical(array)), array)
    assert orient.to_canonical(array).shape == SHAPE and orient.spacing == SPACING
    # each canonical axis must step to the left / inferior / posterior in physical space
    image = sitk.Image(size, sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    flat = orient.to_canonical(np.arange(array.size).reshape(array.shape))
    def point(index):  # physical point of a canonical voxel
        k, j, i = np.unravel_index(flat[index], array.shape)
        return np.array(image.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
    assert np.allclose(point((0, 0, 0)), CORNER)
    for axis in range(3):
        step = np.zeros(3, int)
        step[axis] = 1
        assert np.allclose(point(tuple(step)) - point((0, 0, 0)), SPACING[axis] * CANONICAL_AXES[axis])


@pytest.fixture(scope="module")
def reference():
    """Canonical (image, mask) of the synthetic volume on the first direction (identity)."""
    size, spacing, origin = header(DIRECTIONS[0])
    image, mask = synthesize(size, spacing, DIRECTIONS[0], seed=5, origin=origin)
    return canonical(image), canonical(mask)


def test_synthetic_canonical_anatomy(reference):
    check_anatomy(reference[1])


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_synthetic_volume_same_canonical_array(direction, reference, tmp_path):
    """The same anatomy written under any signed permutation reads back as the same canonical array."""
    size, spacing, origin = header(direction)
    image, mask = synthesize(size, spacing, direction, seed=5, origin=origin)
    arrays = []
    for name, itk in (("image.mha", image), ("mask.mha", mask)):
        sitk.WriteImage(itk, str(tmp_path / name))
        arrays.append(canonical(read_image(tmp_path / name)))
    assert np.array_equal(arrays[1], reference[1])
    assert np.abs(arrays[0].astype(int) - reference[0]).max() <= 1


def real_masks(fast: tuple[str, ...] | None = None) -> list:
    """MASK_NAMES as parameters; the slow run alone checks those not in ``fast`` (default: the
    headers up to BIG_VOXELS voxels)."""
    def slow(name: str) -> bool:
        if fast is not None:
            return name not in fast
        path = SHARED_DATA / "spider-masks" / name
        if not path.is_file():
            return False
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return int(np.prod(reader.GetSize())) > BIG_VOXELS

    return [pytest.param(name, marks=[pytest.mark.slow] if slow(name) else []) for name in MASK_NAMES]


@pytest.mark.parametrize("name", real_masks())
def test_real_mask_orientation(name):
    """Real SPIDER masks, both numbering conventions: canonical layout puts the canal behind and
    the lowest vertebra at the bottom."""
    mask = read_image(shared_data("spider-masks") / name)
    check_anatomy(canonical(mask))


@pytest.mark.parametrize("name", real_masks(fast=("96_t1.mha", "18_t2.mha", "169_t2.mha")))
def test_synthesize_like_real_header(name):
    reference = read_image(shared_data("spider-masks") / name)
    image, mask = synthesize_like(reference, contrast="t1" if "t1" in name else "t2", seed=1)
    same_grid(image, reference)
    same_grid(mask, reference)
    check_anatomy(canonical(mask))


def segment_and_check(reference: sitk.Image, tmp_path, tiny_model_dir) -> None:
    from algorithm.pipeline import Segmenter, segment_file

    image, _ = synthesize_like(reference, seed=2)
    sitk.WriteImage(image, str(tmp_path / "in.mha"), useCompression=True)
    segment_file(tmp_path / "in.mha", tmp_path / "out.mha", Segmenter.load(tiny_model_dir, backend="onnxruntime", device="cpu"))
    out = sitk.ReadImage(str(tmp_path / "out.mha"))
    assert out.GetPixelID() == sitk.sitkInt16
    assert out.GetSize() == reference.GetSize()
    assert out.GetSpacing() == reference.GetSpacing()
    assert out.GetOrigin() == reference.GetOrigin()
    assert out.GetDirection() == reference.GetDirection()


@pytest.mark.parametrize("direction", [DIRECTIONS[0], PIR, DIRECTIONS[7], DIRECTIONS[13], DIRECTIONS[30], DIRECTIONS[44], OBLIQUE])
def test_segment_file_output_on_input_grid(direction, tmp_path, tiny_model_dir):
    size, spacing, origin = header(PIR if direction == OBLIQUE else direction)
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing(spacing)
    reference.SetOrigin(origin)
    reference.SetDirection(direction)
    segment_and_check(reference, tmp_path, tiny_model_dir)


@pytest.mark.parametrize("name", real_masks(fast=("96_t1.mha",)))
def test_segment_file_on_real_header(name, tmp_path, tiny_model_dir):
    segment_and_check(read_image(shared_data("spider-masks") / name), tmp_path, tiny_model_dir)


REAL_HEADERS = sorted((SHARED_DATA / "spider-masks").glob("*.mha")) + sorted((SHARED_DATA / "spider-t2space" / "images").glob("*.mha"))


def test_every_real_spider_header_is_sagittal():
    """All real SPIDER series are sagittal: sagittal axis first (LPS) or last (PIR), 2D stacks of
    3.3-4.8 mm slices and near-isotropic T2-SPACE (0.86 x 0.47 x 0.54 mm) alike."""
    shared_data("spider-masks")
    assert len(REAL_HEADERS) >= 33
    for path in REAL_HEADERS:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        assert non_sagittal_plane(reader.GetDirection(), reader.GetSpacing()) is None, path.name


def spacing_along(direction, lps_axis: int, coarse: float, fine: float = 0.7) -> tuple[float, float, float]:
    """ITK spacing with ``coarse`` mm on the ITK axis that runs along ``lps_axis``, ``fine`` elsewhere."""
    phys = physical_axes(direction)
    return tuple(coarse if phys[c] == lps_axis else fine for c in range(3))


@pytest.mark.parametrize("direction", DIRECTIONS + [OBLIQUE])
def test_plane_is_found_from_direction_and_spacing(direction):
    assert non_sagittal_plane(direction, spacing_along(direction, 0, 4.0)) is None  # thick slices left-right: sagittal
    assert non_sagittal_plane(direction, spacing_along(direction, 2, 4.0)) == "axial"
    assert non_sagittal_plane(direction, spacing_along(direction, 1, 4.0)) == "coronal"
    assert non_sagittal_plane(direction, spacing_along(direction, 2, 0.9, 0.47)) == "axial"  # a 3D series sliced axially
    assert non_sagittal_plane(direction, (0.8, 0.8, 0.8)) is None  # isotropic: every plane is sampled alike
    assert non_sagittal_plane(direction, spacing_along(direction, 0, 0.86, 0.54)) is None  # T2-SPACE 65_t2_SPACE-like
