"""The one-way inference flow: read, orient, preprocess, predict, post-process, write.

Every entry point (CLI, container, training validation, benchmark) goes through these functions.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from algorithm.backend_base import error_line
from algorithm.backends import Backend, load_backend
from algorithm.class_head import ClassHead, chosen_probability, classes_numpy, load_class_head
from algorithm.config import Config
from algorithm.dicom import DicomSeries
from algorithm.geometry import canonical_to_lps, header_orientation, non_sagittal_plane, orientation
from algorithm.io import InputError, read_image, write_image
from algorithm.preprocess import context_slices, pad_to_multiple, preprocess
from algorithm.resident import Resident, TorchResident, load_resident
from algorithm.routing import choose, model_folders

STAGES = ("read", "preprocess", "predict", "postprocess", "write")
DEFAULT_MODEL_DIR = Path(__file__).parent / "resources" / "models"  # a model root (algorithm.routing)

log = logging.getLogger("algorithm")


def model_folder(model_dir: str | Path | None) -> Path:
    """``model_dir``, or the bundled models' root where it is None."""
    return Path(model_dir) if model_dir else DEFAULT_MODEL_DIR


@dataclass
class Timer:
    """Wall-clock seconds per pipeline stage, and the name of the model that predicted."""

    seconds: dict[str, float] = field(default_factory=dict)
    model: str = ""

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class Segmenter:
    """A loaded model: its config, its backend, the batch size slices go through in, whether
    to average with the left-right mirrored input (test-time augmentation, twice the compute),
    the head that turns logits into a class map on the input grid (None: numpy), and the
    device-side predict stage (algorithm.resident; None: batches are stacked on the host)."""

    config: Config
    backend: Backend
    batch_size: int = 8
    mirror: bool = False
    head: ClassHead | None = None
    resident: Resident | TorchResident | None = None
    name: str = ""  # the model folder's name

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "auto", device: str = "auto", batch_size: int | None = None, mirror: bool = False) -> "Segmenter":
        """The model in one model folder (a folder of several: ``Models``)."""
        model_dir = Path(model_dir)
        config = Config.load(model_dir)
        chosen = load_backend(model_dir, config, backend, device)
        head = load_class_head(chosen.device)
        return cls(config, chosen, batch_size or (32 if chosen.device == "cuda" else 4), mirror, head, load_resident(chosen, head), model_dir.name)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Network logits of a batch; with ``mirror``, averaged with those of the mirrored input
        (a left-right mirror of a sagittal slice stack reverses the order of the context slices)."""
        out = self.backend(batch)
        if self.mirror:
            out = (out + self.backend(np.ascontiguousarray(batch[:, ::-1]))) / 2
        return out

    def classes(self, logits: np.ndarray, shape: tuple[int, int], crop: tuple[int, int]) -> np.ndarray:
        """Logits (N, K, h', w'), padded beyond ``crop`` = (h, w) -> uint8 class map (N, H, W) resampled
        linearly to ``shape`` (see algorithm.class_head)."""
        if self.head is not None:
            return self.head(logits, shape, crop)
        return classes_numpy(logits[..., : crop[0], : crop[1]], shape)


class LoadingSegmenter:
    """``Segmenter.load(*args)`` running in a background thread: the config at once, the loaded
    Segmenter from ``result()`` (which re-raises what loading raised). The CLI starts it before the
    first volume is read, so that building the sessions (OpenVINO's compile, ONNX Runtime's graph
    optimisation: native code that releases the GIL) overlaps reading and preprocessing."""

    def __init__(self, model_dir: str | Path, *args):
        from concurrent.futures import ThreadPoolExecutor

        self.name = Path(model_dir).name
        self.config = Config.load(model_dir)
        pool = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._future = pool.submit(Segmenter.load, model_dir, *args)
        pool.shutdown(wait=False)  # its thread ends when loading does

    def result(self) -> Segmenter:
        return self._future.result()

    def failed(self) -> bool:
        """Loading has ended with an exception."""
        return self._future.done() and self._future.exception() is not None


class Models:
    """The models of a model root (``algorithm.routing``), each loaded in the background
    (``LoadingSegmenter``) when a series first needs it: a run loads only the models its series use.
    ``args`` are ``Segmenter.load``'s after the folder."""

    def __init__(self, root: str | Path | None = None, *args):
        self.folders = model_folders(model_folder(root))
        self.args = args
        self.loading: dict[Path, LoadingSegmenter] = {}

    def for_spacing(self, slice_mm: float) -> LoadingSegmenter:
        """The model for a series with this sagittal slice spacing (mm), loading from now on."""
        folder = choose(self.folders, slice_mm)
        if folder not in self.loading:
            self.loading[folder] = LoadingSegmenter(folder, *self.args)
        return self.loading[folder]

    def config_for(self, slice_mm: float) -> Config:
        """The config of the model for a series with this sagittal slice spacing (mm); nothing loads."""
        return self.folders[choose(self.folders, slice_mm)]

    def for_file(self, path: Path) -> LoadingSegmenter:
        """``for_spacing`` from a volume file's header alone (no pixel read)."""
        return self.for_spacing(header_orientation(path)[0].spacing[0])

    def raise_if_failed(self) -> None:
        """Re-raise why a model that was needed did not load."""
        for loading in self.loading.values():
            if loading.failed():
                loading.result()


def batches(n: int, size: int, progress: bool = False) -> Iterable[range]:
    """Slice indices 0..n-1 in batches of ``size``, with a progress bar if ``progress``."""
    ranges = [range(start, min(start + size, n)) for start in range(0, n, size)]
    if not progress:
        return ranges
    from tqdm import tqdm

    return tqdm(ranges, desc="predict", unit="batch", leave=False)


def host_logits(pp: np.ndarray, slice_spacing: float, segmenter: Segmenter, progress: bool = False) -> Iterator[tuple[range, np.ndarray, tuple[int, int]]]:
    """The network's logits of a preprocessed volume, batch by batch, built on the host: (slice
    indices, logits (N, K, h', w') on the model's grid padded to its divisor, the unpadded (h, w))."""
    fill = float(pp.min())
    for idx in batches(pp.shape[0], segmenter.batch_size, progress):
        batch, crop = pad_to_multiple(np.stack([context_slices(pp, i, slice_spacing, segmenter.config) for i in idx]), segmenter.config.divisor, fill)
        yield idx, segmenter.logits(batch), crop


def predict_classes(volume: np.ndarray, spacing: tuple[float, float, float], segmenter: Segmenter | LoadingSegmenter | Models, timer: Timer | None = None,
                    progress: bool = False, probability: np.ndarray | None = None) -> np.ndarray:
    """Canonical image volume -> uint8 class map on the same grid.

    Slices go through the network at the model's spacing; logits are resampled linearly back to
    the input's in-plane grid before the argmax, so boundaries stay smooth at any resolution.
    Batches are built on the network's device where the backend allows (algorithm.resident),
    else on the host; a device-side run that fails falls back to the host for good, with a warning.
    A model still loading is waited for after preprocessing (the wait counts as predict time).
    ``Models`` choose the model by the sagittal spacing ``spacing[0]``. ``probability``, a float
    array of the volume's shape, receives the network's probability of the class it chose at each
    voxel (``class_head.chosen_probability``; batches then go through the host path).
    """
    timer = timer or Timer()
    if isinstance(segmenter, Models):
        segmenter = segmenter.for_spacing(spacing[0])
    timer.model = segmenter.name
    with timer.stage("preprocess"):
        pp = preprocess(volume, spacing, segmenter.config)
    with timer.stage("predict"):
        if isinstance(segmenter, LoadingSegmenter):
            segmenter = segmenter.result()
        classes = np.empty(volume.shape, dtype=np.uint8)
        if segmenter.resident is not None and not segmenter.mirror and probability is None:
            try:
                uploaded, fill = segmenter.resident.upload(pp), float(pp.min())
                for idx in batches(volume.shape[0], segmenter.batch_size, progress):
                    classes[idx.start : idx.stop] = segmenter.resident.classes(uploaded, idx, spacing[0], segmenter.config, fill, volume.shape[1:])
                return classes
            except Exception as err:  # an untried device or provider: the host path gives the same map
                log.warning("device-side prediction failed (%s); building batches on the host", error_line(err))
                segmenter.resident = None
        for idx, logits, crop in host_logits(pp, spacing[0], segmenter, progress):
            classes[idx.start : idx.stop] = segmenter.classes(logits, volume.shape[1:], crop)
            if probability is not None:
                probability[idx.start : idx.stop] = chosen_probability(logits[..., : crop[0], : crop[1]], volume.shape[1:])
    return classes


def segment_volume(volume: np.ndarray, spacing: tuple[float, float, float], segmenter: Segmenter | LoadingSegmenter | Models, timer: Timer | None = None, progress: bool = False,
                   actions: list[dict] | None = None, probability: np.ndarray | None = None) -> np.ndarray:
    """Canonical image volume -> int16 SPIDER instance labels on the same grid (``actions``: a list that
    receives the post-processing records; ``probability``: see ``predict_classes``)."""
    from algorithm.postprocess import postprocess

    timer = timer or Timer()
    if isinstance(segmenter, Models):
        segmenter = segmenter.for_spacing(spacing[0])
    classes = predict_classes(volume, spacing, segmenter, timer, progress, probability)
    with timer.stage("postprocess"):
        return postprocess(classes, spacing, segmenter.config, actions).astype(np.int16, copy=False)


def check_sagittal(image, path: str | Path) -> None:
    """Raise InputError naming the plane of a series that is not sliced sagittally."""
    plane = non_sagittal_plane(image.GetDirection(), image.GetSpacing())
    if plane is not None:
        raise InputError(f"{path}: {plane} series (spacing {tuple(round(s, 2) for s in image.GetSpacing())} mm); "
                         "the model segments sagittal series (--allow-non-sagittal segments it anyway)")


def segment_file(in_path: str | Path | DicomSeries, out_path: str | Path, segmenter: Segmenter | LoadingSegmenter | Models, qc_dir: str | Path | None = None, progress: bool = False,
                 allow_non_sagittal: bool = False) -> Timer:
    """Segment one volume file or DICOM series and write the instance mask on the input's grid; return the
    stage timings and the model's name.
    An axial or coronal series is an InputError unless ``allow_non_sagittal``."""
    import SimpleITK as sitk

    timer = Timer()
    with timer.stage("read"):
        image = in_path.read() if isinstance(in_path, DicomSeries) else read_image(in_path)
        if not allow_non_sagittal:
            check_sagittal(image, in_path)
        orient = orientation(image.GetDirection(), image.GetSpacing())
        volume = orient.to_canonical(sitk.GetArrayViewFromImage(image))
    actions: list[dict] | None = [] if qc_dir is not None else None
    probability = np.empty(volume.shape, np.float32) if qc_dir is not None else None
    labels = segment_volume(volume, orient.spacing, segmenter, timer, progress, actions, probability)
    with timer.stage("write"):
        if str(out_path).endswith(".dcm"):  # --format dicom-seg: only DICOM series get here (cli.run)
            from algorithm.dicom_seg import write_seg

            write_seg(orient.from_canonical(labels), in_path, out_path)
        else:
            write_image(orient.from_canonical(labels), image, out_path)
    if qc_dir is not None:
        write_qc_or_warn(volume, labels, orient.spacing, Path(qc_dir), Path(out_path), actions, lambda index: canonical_to_lps(index, orient, image), timer.model, probability)
    return timer


def write_qc_or_warn(volume: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float], qc_dir: Path, out_path: Path, actions: list[dict] | None = None,
                     to_lps=None, model: str = "", probability: np.ndarray | None = None) -> None:
    """QC picture and volumes of a mask already written (``actions``: post-processing records; ``to_lps``:
    canonical indices -> LPS mm; ``model``: the name of the model that segmented it; ``probability``: the
    network's probability of its chosen class per voxel; see qc.write_qc): a failure here is a warning,
    the segmentation itself succeeded."""
    from algorithm.qc import write_qc

    try:
        write_qc(volume, labels, spacing, qc_dir, out_path.name.split(".")[0], actions, to_lps, model, probability)
    except Exception as err:  # QC is an extra: never fail a case whose mask is written
        log.warning("%s: QC output failed (%s); the mask was written", out_path.name, error_line(err))
