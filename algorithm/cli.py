"""spider-segment: segment vertebrae, discs and spinal canal in sagittal lumbar spine MR volumes.

INPUT is a grand-challenge input root (images/sagittal-spine-mri/*.mha, optional inputs.json),
a folder of volumes (.mha, .nii.gz, ...), one volume file, a folder of DICOM series (searched
with its subfolders; each sagittal series is one volume, named <SeriesNumber>_<SeriesDescription>),
or one DICOM file (its series, read from the file's folder).
Grand-challenge mode writes OUTPUT/images/sagittal-spine-mr-segmentation/<name>.mha; the other
modes write OUTPUT/<name>.mha (or .nii.gz with --format nii.gz, or a DICOM Segmentation object
OUTPUT/<name>.dcm with --format dicom-seg, for DICOM input only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from algorithm.backend_base import BACKENDS, DEVICES, error_line

if TYPE_CHECKING:
    from algorithm.dicom import DicomSeries

GC_INPUT = Path("images/sagittal-spine-mri")
GC_OUTPUT = Path("images/sagittal-spine-mr-segmentation")
GC_SLUG = "sagittal-spine-mri"
MODEL_ENV = "SPIDER_MODEL_DIR"
GC_MODEL_DIR = Path("/opt/ml/model")
SUFFIXES = {"mha": ".mha", "nii.gz": ".nii.gz", "dicom-seg": ".dcm"}  # --format -> output file suffix

log = logging.getLogger("algorithm")


class UsageError(Exception):
    """The command line or the input location is unusable; nothing was segmented."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spider-segment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", type=Path, default=Path("/input"), help="input root, folder or file (default /input)")
    parser.add_argument("-o", "--output", type=Path, default=Path("/output"), help="output folder (default /output)")
    parser.add_argument("--format", choices=tuple(SUFFIXES), default="mha", help="output file format (default mha; dicom-seg: a DICOM Segmentation object per series, for DICOM input only)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="default auto: TensorRT, then ONNX Runtime on CUDA, then OpenVINO, ONNX Runtime, PyTorch on the CPU (the first installed that loads)")
    parser.add_argument("--model", type=Path, help=f"model folder, or a folder of model folders to choose from by slice spacing (default: ${MODEL_ENV}, "
                        f"else {GC_MODEL_DIR} if it holds a model, else the bundled models: thin-slice for series under 2 mm, thick-slice for the others)")
    parser.add_argument("--batch-size", type=int, help="slices per network call (default 4 on CPU, 32 on GPU)")
    parser.add_argument("--mirror", action="store_true", help="test-time augmentation: also segment the left-right mirrored volume and average (twice the time)")
    parser.add_argument("--allow-non-sagittal", action="store_true", help="also segment axial and coronal series (resliced sagittally; the model was trained on sagittal series)")
    parser.add_argument("--qc", action="store_true", help="also write OUTPUT/qc/<name>_qc.png, <name>_volumes.json (volumes, per-level measurements) and <name>_measurements.csv")
    parser.add_argument("--workers", type=int, metavar="N", help="segment the cases on a local Dask cluster of N worker processes (each loads the model once) and also write OUTPUT/cohort.csv and OUTPUT/run.json (needs the extra: pip install 'spider-segment[cohort]'; docs/cohort.md)")
    parser.add_argument("--cluster", metavar="ADDRESS", help="the same on a running Dask cluster (its scheduler's address); its workers must reach INPUT, OUTPUT and the model folder")
    parser.add_argument("--resume", action="store_true", help="with --workers or --cluster: skip the cases whose mask and cohort record exist")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    return parser.parse_args(argv)


def model_dir(arg: Path | None) -> Path | None:
    """--model, else $SPIDER_MODEL_DIR, else /opt/ml/model when it holds a model (a config, or model
    folders with one), else None (bundled)."""
    if arg:
        return arg
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    from algorithm.routing import holds_model

    if holds_model(GC_MODEL_DIR):
        return GC_MODEL_DIR
    return None


def gc_inputs(root: Path) -> list[Path]:
    """Image files of a grand-challenge input root (inputs.json, when present, must name the interface)."""
    listing = root / "inputs.json"
    if listing.is_file():
        try:
            entries = json.loads(listing.read_text())
            slugs = {e["interface"]["slug"] for e in entries}
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{listing}: not a grand-challenge inputs.json ({err})") from None
        if GC_SLUG not in slugs:
            raise UsageError(f"{listing}: no '{GC_SLUG}' input (found {', '.join(sorted(slugs)) or 'none'})")
    return sorted(p for p in (root / GC_INPUT).iterdir() if not p.name.startswith("."))


def jobs(src: Path, dst: Path, suffix: str = ".mha") -> list[tuple[Path | DicomSeries, Path]]:
    """(input file or DICOM series, output file) pairs for an input root, folder or file."""
    from algorithm.dicom import is_dicom_file
    from algorithm.io import is_volume_file, stem

    if not src.exists():
        raise UsageError(f"{src}: input does not exist")
    if src.is_file():
        return dicom_jobs(src, dst, suffix) if not is_volume_file(src) and is_dicom_file(src) else [(src, dst / f"{stem(src)}{suffix}")]
    if (src / GC_INPUT).is_dir() or (src / "inputs.json").is_file():
        if not (src / GC_INPUT).is_dir():
            raise UsageError(f"{src}: grand-challenge input root without {GC_INPUT}/")
        files, out = gc_inputs(src), dst / GC_OUTPUT
    else:
        files, out = sorted(p for p in src.iterdir() if is_volume_file(p)), dst
        if not files:
            return dicom_jobs(src, dst, suffix)
    if not files:
        raise UsageError(f"{src}: no input volumes found")
    return [(f, out / f"{stem(f)}{suffix}") for f in files]


def dicom_jobs(src: Path, dst: Path, suffix: str) -> list[tuple[DicomSeries, Path]]:
    """(series, output file) for every sagittal DICOM series under ``src`` (a DICOM file: the
    series in its folder that holds it); the others are logged as skipped, with the reason."""
    from algorithm.dicom import find_series

    if src.is_file():
        series = [s for s in find_series(src.parent, recursive=False) if src.resolve() in {f.path.resolve() for f in s.slices}]
        if not series:
            raise UsageError(f"{src}: DICOM file without a readable image header")
    else:
        series = find_series(src)
    if not series:
        raise UsageError(f"{src}: no input volumes found (no volume files, no DICOM series)")
    keep = []
    for s in series:
        reason = s.skip_reason()
        if reason:
            log.warning("%s: skipped: %s", s, reason)
        else:
            keep.append((s, dst / f"{s.name}{suffix}"))
    if not keep:
        raise UsageError(f"{src}: none of its {len(series)} DICOM series is a sagittal volume")
    return keep


def check_dicom_seg(src: Path, pairs: list[tuple[Path | DicomSeries, Path]]) -> None:
    """UsageError unless every input is a DICOM series (a SEG references its source images) and
    the optional extra ``dicom`` (highdicom, pydicom) is installed."""
    from importlib.util import find_spec

    from algorithm.dicom import DicomSeries

    if not all(isinstance(s, DicomSeries) for s, _ in pairs):
        raise UsageError(f"{src}: --format dicom-seg needs DICOM input (a DICOM SEG references its source images); this input holds volume files")
    missing = [m for m in ("highdicom", "pydicom") if find_spec(m) is None]
    if missing:
        raise UsageError(f"--format dicom-seg needs {' and '.join(missing)} (pip install 'spider-segment[dicom]')")


def run(args: argparse.Namespace) -> int:
    """Segment every input; a failed file is reported in one line and the others still run."""
    from algorithm.io import InputError
    from algorithm.pipeline import STAGES, Models, segment_file

    pairs = jobs(args.input, args.output, SUFFIXES[args.format])
    if args.format == "dicom-seg":
        check_dicom_seg(args.input, pairs)
    if args.workers is not None or args.cluster or args.resume:
        return run_cohort(args, pairs)
    models = Models(model_dir(args.model), args.backend, args.device, args.batch_size, args.mirror)
    if isinstance(pairs[0][0], Path):
        try:
            models.for_file(pairs[0][0])  # the first file's model loads while that file is read
        except (InputError, RuntimeError):  # no model for it, or unreadable: that file's own run says why, in one line
            pass
    failed = 0
    progress = len(pairs) > 1 and sys.stderr.isatty()
    for src, dst in pairs:
        try:
            timer = segment_file(src, dst, models, args.output / "qc" if args.qc else None, progress=progress, allow_non_sagittal=args.allow_non_sagittal)
        except InputError as err:
            log.error("%s", err)
            failed += 1
            continue
        except Exception as err:  # one bad volume must not stop the others, nor print a traceback
            models.raise_if_failed()  # why a model did not load: nothing can be segmented with it
            if args.verbose:
                log.exception("%s: failed", src)
            else:
                log.error("%s: failed: %s", src, error_line(err))
            failed += 1
            continue
        seconds = timer.seconds
        log.info("%s -> %s (model %s; %s; total %.2f s)", src.name, dst, timer.model, ", ".join(f"{s} {seconds.get(s, 0):.2f}" for s in STAGES), sum(seconds.values()))
    if failed:
        log.error("%d of %d volumes failed", failed, len(pairs))
    return 1 if failed else 0


def run_cohort(args: argparse.Namespace, pairs: list) -> int:
    """The cases on a Dask cluster (algorithm.cohort), imported only here."""
    if args.workers is None and not args.cluster:
        raise UsageError("--resume needs --workers N or --cluster ADDRESS")
    if args.workers is not None and (args.workers < 1 or args.cluster):
        raise UsageError("--workers takes a number of workers >= 1, and not together with --cluster")
    if args.format == "dicom-seg":
        raise UsageError("--format dicom-seg is not for cohort runs (cohort.csv is read back from .mha or .nii.gz masks)")
    try:
        from algorithm.cohort import Options, run_cohort as run_on_cluster
    except ModuleNotFoundError as err:
        if err.name not in ("dask", "distributed"):
            raise
        raise UsageError("--workers and --cluster need Dask distributed: pip install 'spider-segment[cohort]'") from None
    options = Options(model_dir(args.model), args.backend, args.device, args.batch_size, args.mirror, args.output / "qc" if args.qc else None, args.allow_non_sagittal)
    return run_on_cluster(pairs, args.output, options, args.workers, args.cluster, args.resume)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        return run(args)
    except UsageError as err:
        log.error("%s", err)
        return 2
    except Exception as err:  # e.g. no backend can load: still one line
        if args.verbose:
            raise
        log.error("%s", error_line(err))
        return 2


def entry() -> None:
    """The console script's and the container's entry: main(), then leave at once. Everything is
    written by then; the interpreter's teardown (freeing the sessions and arrays, finalising
    modules) would only add about 0.06 s to every container start."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
