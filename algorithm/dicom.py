"""DICOM input: find the series in a folder, say which ones are not sagittal volumes, and read
each sagittal one into a 3D image whose grid comes from the slices' own positions.

Series are grouped by SeriesInstanceUID across the whole folder tree (an export may split one
series over several folders), then by EchoNumbers and ImageType where one UID holds several
stacks (Dixon, multi-echo). Each series' slice headers are checked before any pixel is read: one
orientation, one size, one pixel spacing, slices stacked along their normal at one even step. The
volume's grid is built from those headers (origin = first slice's ImagePositionPatient, direction
= row, column, normal; in-plane spacing = PixelSpacing, else ImagerPixelSpacing; slice spacing =
the step between positions), so a segmentation written on it lands where the scanner placed the
slices. Enhanced (multi-frame) files are refused with their own message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithm.geometry import PLANE_NORMAL_TO
from algorithm.io import InputError, _reason, check_image

NORMAL_TOL = 1e-3  # slices count as parallel when their normals differ by less than this
STEP_RTOL = 0.01  # allowed deviation of one step between slices from the median step
POSITION_TOL_MM = 0.01  # allowed in-plane drift of slice positions (rounding in the headers)
MIN_SERIES_SLICES = 3  # fewer slices than this are a localiser or a single image, not a volume
NAME_CHARS = 60
LOCALISER_WORDS = re.compile(r"(?:^|[_-])(?:loc|scout|survey|3_?pl)", re.IGNORECASE)  # in SeriesNumber_SeriesDescription

# DICOM tags read from each slice's header
POSITION, ORIENTATION, ROWS, COLUMNS = "0020|0032", "0020|0037", "0028|0010", "0028|0011"
IMAGE_TYPE, DESCRIPTION, NUMBER, FRAMES = "0008|0008", "0008|103e", "0020|0011", "0028|0008"
PIXEL_SPACING, IMAGER_PIXEL_SPACING, ECHO = "0028|0030", "0018|1164", "0018|0086"


@dataclass(frozen=True)
class Slice:
    """The header fields of one DICOM file that place it in the patient."""

    path: Path
    position: np.ndarray  # ImagePositionPatient, LPS mm
    row: np.ndarray  # direction of increasing column index
    column: np.ndarray  # direction of increasing row index
    size: tuple[int, int]  # columns, rows
    image_type: str
    title: str  # SeriesNumber_SeriesDescription
    pixel_spacing: tuple[float, float] | None = None  # mm between columns, between rows (ITK x, y); None: not in the header
    echo: str = ""  # EchoNumbers


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series (or one stack of a series that holds several): the folder holding its
    files (their common folder when they lie in several), their headers in no particular order,
    and a file-safe name."""

    folder: Path
    uid: str
    name: str
    slices: tuple[Slice, ...]
    unreadable: tuple[str, ...] = ()  # one line per file whose header could not be used
    ignored: tuple[str, ...] = ()  # files beside the series that were not read as DICOM

    def __str__(self) -> str:
        return f"{self.folder}: DICOM series {self.name} ({len(self.slices)} files)"

    def skip_reason(self) -> str | None:
        """Why this series is not a sagittal volume to segment, or None if it is one.

        A series with mixed orientations or unreadable files is not skipped: read() says what is wrong.
        """
        if not self.slices:
            return None
        if any("LOCALIZER" in s.image_type.upper() for s in self.slices):
            return "localiser (ImageType LOCALIZER)"
        if LOCALISER_WORDS.search(self.slices[0].title):
            return f"localiser (series description {self.slices[0].title!r})"
        if len(self.slices) < MIN_SERIES_SLICES:
            return f"{len(self.slices)} slice{'s' * (len(self.slices) != 1)}, not a volume"
        normals = [np.cross(s.row, s.column) for s in self.slices]
        if any(np.abs(n - normals[0]).max() > NORMAL_TOL for n in normals):
            return None
        plane = slice_plane(normals[0])
        return None if plane == "sagittal" else f"{plane} slices (normal {_vector(normals[0])}), not sagittal"

    def read(self):
        """The series as one 3D SimpleITK image on the grid of its slice positions; InputError
        naming the series if the slices do not form one evenly spaced stack or cannot be read."""
        import SimpleITK as sitk

        if self.unreadable:
            more = f" (and {len(self.unreadable) - 1} more)" if len(self.unreadable) > 1 else ""
            raise InputError(f"{self}: {self.unreadable[0]}{more}")
        ordered, step = self.stack()
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(s.path) for s in ordered])
        warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)  # spacing is checked above, to the tolerance set here
        try:
            image = reader.Execute()
            array = sitk.GetArrayViewFromImage(image)
        except RuntimeError as err:
            raise InputError(f"{self}: cannot read pixel data ({_reason(err)})") from None
        finally:
            sitk.ProcessObject.SetGlobalWarningDisplay(warnings)
        first = ordered[0]
        image.SetOrigin(tuple(float(v) for v in first.position))
        image.SetSpacing((*first.pixel_spacing, step))
        image.SetDirection(tuple(float(v) for v in np.column_stack([first.row, first.column, np.cross(first.row, first.column)]).ravel()))
        check_image(image, array, self)
        return image

    def stack(self) -> tuple[list[Slice], float]:
        """Slices sorted along their normal and the step between them; InputError if they are
        not one stack of parallel, equally sized slices at an even step with a known pixel spacing."""
        first = self.slices[0]
        normal = np.cross(first.row, first.column)
        unknown = next((s for s in self.slices if s.pixel_spacing is None), None)
        if unknown:
            raise InputError(f"{self}: {unknown.path.name} has neither PixelSpacing nor ImagerPixelSpacing: "
                             "the pixel size in mm is unknown, so the series is not segmented")
        if any(np.abs(s.row - first.row).max() > NORMAL_TOL or np.abs(s.column - first.column).max() > NORMAL_TOL for s in self.slices):
            kinds = sorted({slice_plane(np.cross(s.row, s.column)) for s in self.slices})
            raise InputError(f"{self}: mixed slice orientations ({', '.join(kinds)}) in one series")
        if len({s.size for s in self.slices}) > 1:
            raise InputError(f"{self}: slices of different sizes {sorted({s.size for s in self.slices})}")
        spacings = np.array([s.pixel_spacing for s in self.slices])
        if np.abs(spacings - spacings[0]).max() > STEP_RTOL * spacings[0].min():
            raise InputError(f"{self}: slices of different pixel spacing ({_mm(spacings.min())}-{_mm(spacings.max())} mm)")
        ordered = sorted(self.slices, key=lambda s: float(s.position @ normal))
        offsets = np.array([s.position for s in ordered])
        depth = offsets @ normal
        steps = np.diff(depth)
        step = float(np.median(steps))
        if step <= 0 or steps.min() < STEP_RTOL * step:
            raise InputError(f"{self}: two slices at the same position ({_mm(depth[np.argmin(steps)])} mm along the normal)")
        worst = int(np.argmax(np.abs(steps - step)))
        if steps[worst] > 1.5 * step:
            missing = round(steps[worst] / step) - 1
            hint = f" (not readable as DICOM beside it: {', '.join(self.ignored[:3])}{', ...' * (len(self.ignored) > 3)})" if self.ignored else ""
            raise InputError(f"{self}: missing slice{'s' * (missing != 1)}: a gap of {_mm(steps[worst])} mm between slices at "
                             f"{_mm(depth[worst])} and {_mm(depth[worst + 1])} mm along the normal, where the step is {_mm(step)} mm{hint}")
        if abs(steps[worst] - step) > STEP_RTOL * step:
            raise InputError(f"{self}: uneven slice spacing ({_mm(steps.min())}-{_mm(steps.max())} mm between slices)")
        shift = offsets - offsets[0] - np.outer(depth - depth[0], normal)
        if np.abs(shift).max() > max(POSITION_TOL_MM, STEP_RTOL * step):
            raise InputError(f"{self}: slices are not stacked along their normal (in-plane shift up to {_mm(np.abs(shift).max())} mm)")
        return ordered, float((depth[-1] - depth[0]) / (len(ordered) - 1))


def slice_plane(normal: np.ndarray) -> str:
    """'sagittal', 'coronal' or 'axial': the plane whose LPS axis the slice normal is closest to."""
    return PLANE_NORMAL_TO[int(np.argmax(np.abs(normal)))]


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` is a DICOM Part 10 file (the 'DICM' marker after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def find_series(folder: Path, recursive: bool = True) -> list[DicomSeries]:
    """Every DICOM series in ``folder`` (and, if ``recursive``, its subfolders), sorted by name;
    files that are not DICOM are ignored. Files with one SeriesInstanceUID form one series
    wherever they lie; one UID holding several stacks (EchoNumbers, ImageType) gives one series
    per stack. Names are made unique."""
    import SimpleITK as sitk

    by_uid: dict[str, list[Path]] = {}
    beside: dict[Path, list[str]] = {}  # per folder: its files that are not in a series
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(dirs) if recursive else []
        listed = {uid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(root, uid) for uid in (sitk.ImageSeriesReader.GetGDCMSeriesIDs(root) if files else ())}
        beside[Path(root)] = sorted(set(files) - {Path(f).name for names in listed.values() for f in names})
        for uid, names in listed.items():
            by_uid.setdefault(uid, []).extend(Path(f) for f in names)
    found = []
    for uid, paths in by_uid.items():
        slices, unreadable = [], []
        for f in paths:
            try:
                slices.append(_header(f))
            except ValueError as err:
                unreadable.append(f"{f.name}: {err}")
        folders = sorted({f.parent for f in paths})
        ignored = tuple(name for f in folders for name in beside[f])
        title = next((s.title for s in slices if s.title), "") or _safe(uid) or "series"
        for suffix, stack in _stacks(slices):
            found.append((Path(os.path.commonpath(folders)), uid, "_".join(filter(None, (title, suffix))), stack, tuple(unreadable), ignored))
    titles = [name for _, _, name, *_ in found]
    series = [DicomSeries(root, uid, f"{name}_{_safe(uid)[-12:]}" if titles.count(name) > 1 else name, slices, unreadable, ignored)
              for root, uid, name, slices, unreadable, ignored in found]
    return sorted(series, key=lambda s: s.name)


def _stacks(slices: list[Slice]) -> list[tuple[str, tuple[Slice, ...]]]:
    """The stacks in one series' slices, one per (EchoNumbers, ImageType), each with a name
    suffix that tells it apart from the others ('' when there is only one stack): 'echo2' where
    the echoes differ, and the ImageType values not shared by all stacks (e.g. 'W', 'F'); numbered
    where these are not unique."""
    keys = sorted({(s.echo, s.image_type) for s in slices})
    if len(keys) < 2:
        return [("", tuple(slices))]
    shared = set.intersection(*(set(image_type.split("\\")) for _, image_type in keys))
    several_echoes = len({echo for echo, _ in keys}) > 1
    suffixes = [_safe("_".join([f"echo{echo}"] * several_echoes + [v for v in image_type.split("\\") if v not in shared])) for echo, image_type in keys]
    if len(set(suffixes)) < len(suffixes):
        suffixes = [f"{suffix}_{i}".lstrip("_") for i, suffix in enumerate(suffixes, 1)]
    return [(suffix, tuple(s for s in slices if (s.echo, s.image_type) == key)) for suffix, key in zip(suffixes, keys)]


def _header(path: Path) -> Slice:
    """The placement fields of one DICOM file; ValueError saying which field is unusable."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ValueError(f"unreadable header ({_reason(err)})") from None
    tag = lambda key: reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""  # noqa: E731
    frames = int(_numbers(tag(FRAMES), 1, "NumberOfFrames")[0]) if tag(FRAMES) else 1
    if frames > 1:
        raise ValueError(f"a multi-frame (enhanced) DICOM file with {frames} frames; only one slice per file is read "
                         "(convert the series, e.g. with dcm2niix, and segment the .nii.gz)")
    position = _numbers(tag(POSITION), 3, "ImagePositionPatient")
    orientation = _numbers(tag(ORIENTATION), 6, "ImageOrientationPatient")
    row, column = orientation[:3], orientation[3:]
    if min(np.linalg.norm(row), np.linalg.norm(column)) < 0.5 or abs(row @ column) > 0.01 * np.linalg.norm(row) * np.linalg.norm(column):
        raise ValueError(f"invalid ImageOrientationPatient {tag(ORIENTATION)!r}")
    size = tuple(int(_numbers(tag(key), 1, name)[0]) for key, name in ((COLUMNS, "Columns"), (ROWS, "Rows")))
    title = _safe("_".join(v for v in (tag(NUMBER), tag(DESCRIPTION)) if v))
    spacing_tag, spacing_name = (PIXEL_SPACING, "PixelSpacing") if tag(PIXEL_SPACING) else (IMAGER_PIXEL_SPACING, "ImagerPixelSpacing")
    pixel_spacing = tuple(float(v) for v in _numbers(tag(spacing_tag), 2, spacing_name)[::-1]) if tag(spacing_tag) else None
    return Slice(path, position, row / np.linalg.norm(row), column / np.linalg.norm(column), size, tag(IMAGE_TYPE), title, pixel_spacing, tag(ECHO))


def _numbers(text: str, count: int, name: str) -> np.ndarray:
    """``count`` numbers of a DICOM multi-value string; ValueError naming the field otherwise."""
    try:
        values = np.array([float(v) for v in text.split("\\")], dtype=float)
    except ValueError:
        values = np.array([])
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise ValueError(f"missing or invalid {name} {text!r}" if text else f"no {name}")
    return values


def _safe(text: str) -> str:
    """Letters, digits, '-' and '_' only (no dots: the name is also a file stem)."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")[:NAME_CHARS]


def _vector(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


def _mm(value: float) -> str:
    return f"{value:.2f}"
