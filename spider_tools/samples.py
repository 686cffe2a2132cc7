"""Sample cases for container tests and ``make demo``, in grand-challenge layout, each with its
truth, and the check of an output against them.

    test/cases/<key>/input/images/sagittal-spine-mri/<name>.mha     the input volume
    test/cases/<key>/input/inputs.json                              grand-challenge's socket list
    test/cases/<key>/expected/images/sagittal-spine-mr-segmentation/<name>.mha   the model's output
    test/cases/<key>/truth/<name>.mha                               the true mask
    test/cases/<key>/floors.json                                    class-Dice floors against the truth
    test/cases/MODEL.json                                           the model that made the expected outputs

Synthetic cases are made from a seed with their phantom mask as truth (``make`` rewrites them byte
for byte); the real case is a SPIDER validation case with its reference mask, copied from
../shared/data (SOURCE.md beside it). An output passes when it matches the expected output (same
grid and labels, Dice >= 0.99 per structure: the regression check) and its class Dice against the
truth reaches the case's floors (the accuracy check). After a new model is in place run
``python -m spider_tools.samples expected``: it rewrites the expected outputs and MODEL.json and
prints each case's class Dice against its truth beside its floors; ``floors`` sets the floors to
the measured values less a margin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_SLUG, OUTPUT_SLUG = "sagittal-spine-mri", "sagittal-spine-mr-segmentation"
CASES_DIR = Path(__file__).resolve().parents[1] / "test" / "cases"
SHARED_DATA = CASES_DIR.parents[2] / "shared" / "data"
MODEL_RECORD = "MODEL.json"  # in the cases folder: which model made the expected outputs
FLOORS_NAME = "floors.json"  # in a case folder: class-Dice floors against the truth
CLASS_KEYS = ("ClassDiceVertebrae", "ClassDiceDiscs", "ClassDiceSpinalCanal")
MIN_DICE = 0.99
FLOOR_MARGIN = 0.05
# ITK direction matrices (row-major, columns = image axes in LPS)
LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # x: left (sagittal axis first), y: posterior, z: superior
PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # x: posterior, y: inferior, z: right (sagittal axis last)


@dataclass(frozen=True)
class CaseSpec:
    """One synthetic sample case."""

    key: str
    size: tuple[int, int, int]  # ITK (x, y, z)
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    contrast: str
    seed: int

    @property
    def name(self) -> str:
        """A stable uuid-like file name, as grand-challenge gives its inputs."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"spider-segment/test-case/{self.key}"))


CASES = (
    CaseSpec("t2-sagittal-axis-first", (12, 144, 160), (3.5, 1.1, 1.1), LPS, "t2", 1),
    CaseSpec("t1-pir-sagittal-axis-last", (144, 160, 14), (1.0, 1.0, 3.0), PIR, "t1", 2),
)


@dataclass(frozen=True)
class RealCase:
    """A real SPIDER case: image and reference mask of the same name in a SPIDER-layout folder."""

    key: str
    folder: str  # under ../shared/data
    name: str  # file stem in images/ and masks/

    @property
    def source(self) -> Path:
        return SHARED_DATA / self.folder


REAL_CASES = (RealCase("spider-50-t2space", "spider-t2space", "50_t2_SPACE"),)
SOURCE_NOTE = """# Source and licence of this sample case

`input/images/sagittal-spine-mri/{name}.mha` (image) and `truth/{name}.mha` (reference mask) are
files `images/{name}.mha` and `masks/{name}.mha` of the SPIDER lumbar spine MRI dataset, copied byte
for byte from this project's `../shared/data/{folder}` (see its README: central sagittal slab of a
T2-SPACE series, rescaled to 8 bits by an earlier redistribution; the mask is the original SPIDER
instance mask). It belongs to the validation subset of that folder's `overview.csv`: keep it (and
`../shared/data/spider-masks/{name}.mha`, the mask of the whole series) out of training, so that the class Dice the
sample tests measure on it stays an honest measure.

Dataset: J. W. van der Graaf et al., "Lumbar spine segmentation in MR images: a dataset and a public
benchmark", *Scientific Data* 11, 264 (2024), https://doi.org/10.1038/s41597-024-03090-w; data on
Zenodo, record 10159290, https://zenodo.org/records/10159290.

Licence: Creative Commons Attribution 4.0 International (CC-BY-4.0),
https://creativecommons.org/licenses/by/4.0/. Cite the paper above when you use or show these files.
"""


def inputs_json(name: str) -> list[dict]:
    """grand-challenge's /input/inputs.json for one image socket (format of its algorithm jobs)."""
    return [
        {
            "pk": 1,
            "file": None,
            "image": {"pk": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "name": f"{name}.mha"},
            "value": None,
            "interface": {
                "pk": 1,
                "title": "Sagittal Spine MRI",
                "slug": INPUT_SLUG,
                "kind": "Image",
                "super_kind": "Image",
                "relative_path": f"images/{INPUT_SLUG}",
                "default_value": None,
            },
        }
    ]


def input_path(case_dir: Path) -> Path:
    """The one input volume of a case folder."""
    files = sorted((case_dir / "input" / "images" / INPUT_SLUG).glob("*.mha"))
    if len(files) != 1:
        raise FileNotFoundError(f"{case_dir}: expected one .mha under input/images/{INPUT_SLUG}, found {len(files)}")
    return files[0]


def expected_path(case_dir: Path) -> Path:
    """Where a case's expected output lies."""
    return case_dir / "expected" / "images" / OUTPUT_SLUG / input_path(case_dir).name


def output_path(output_dir: Path, case_dir: Path) -> Path:
    """Where the entry point writes a case's output under ``output_dir`` (grand-challenge layout)."""
    return output_dir / "images" / OUTPUT_SLUG / input_path(case_dir).name


def _write_socket(case_dir: Path, name: str) -> Path:
    """Empty the case's input folder, write its inputs.json; return where its volume goes."""
    shutil.rmtree(case_dir / "input", ignore_errors=True)
    path = case_dir / "input" / "images" / INPUT_SLUG / f"{name}.mha"
    path.parent.mkdir(parents=True)
    (case_dir / "input" / "inputs.json").write_text(json.dumps(inputs_json(name), indent=2) + "\n")
    return path


def truth_path(case_dir: Path) -> Path:
    """Where a case's true mask lies (same file name as its input)."""
    return case_dir / "truth" / input_path(case_dir).name


def write_inputs(spec: CaseSpec, cases_dir: Path) -> Path:
    """Synthesize a case's volume and its phantom mask (the truth); write its input and truth
    folders; return the case folder."""
    import SimpleITK as sitk

    from spider_tools.synthetic import synthesize

    case_dir = cases_dir / spec.key
    image, mask = synthesize(spec.size, spec.spacing, spec.direction, contrast=spec.contrast, seed=spec.seed)
    sitk.WriteImage(image, str(_write_socket(case_dir, spec.name)), useCompression=True)
    shutil.rmtree(case_dir / "truth", ignore_errors=True)
    (case_dir / "truth").mkdir()
    sitk.WriteImage(mask, str(truth_path(case_dir)), useCompression=True)
    return case_dir


def copy_real_case(case: RealCase, cases_dir: Path) -> Path:
    """Copy a real SPIDER case (image as input, mask as truth) and its source note into its case
    folder, byte for byte; return the case folder."""
    image, mask = case.source / "images" / f"{case.name}.mha", case.source / "masks" / f"{case.name}.mha"
    for path in (image, mask):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: SPIDER source of sample case {case.key} not found")
    case_dir = cases_dir / case.key
    shutil.copyfile(image, _write_socket(case_dir, case.name))
    shutil.rmtree(case_dir / "truth", ignore_errors=True)
    (case_dir / "truth").mkdir()
    shutil.copyfile(mask, truth_path(case_dir))
    (case_dir / "SOURCE.md").write_text(SOURCE_NOTE.format(name=case.name, folder=case.folder))
    return case_dir


def run_entry_point(case_dir: Path, output_dir: Path, model_dir: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m algorithm -i CASE/input -o OUTPUT`` (the container's entry point) on the CPU, with
    ONNX Runtime in FP32 as the image runs it there (``./test.sh --local`` does the same)."""
    command = [sys.executable, "-m", "algorithm", "-i", str(case_dir / "input"), "-o", str(output_dir), "--device", "cpu", "--backend", "onnxruntime"]
    if model_dir is not None:
        command += ["--model", str(model_dir)]
    return subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "2"})


def resolve_model_dir(model_dir: Path | None = None) -> Path:
    """The model folder the entry point uses for ``--model model_dir`` (None: its default)."""
    from algorithm.cli import model_dir as cli_model_dir
    from algorithm.pipeline import model_folder

    return model_folder(cli_model_dir(model_dir))


def model_record(model_dir: Path) -> dict:
    """What identifies the outputs of a model root: per model folder (``algorithm.routing``) the
    SHA-256 of its ONNX file and of its config."""
    from algorithm.backends import ONNX_NAME
    from algorithm.config import CONFIG_NAME
    from algorithm.routing import model_folders
    from algorithm.tensorrt_backend import sha256

    return {"models": {folder.name: {"onnx_sha256": sha256(folder / ONNX_NAME), "config_sha256": sha256(folder / CONFIG_NAME)} for folder in model_folders(model_dir)}}


def write_expected(case_dir: Path, model_dir: Path | None = None) -> Path:
    """Run the entry point on a case and store its output as the case's expected output."""
    with tempfile.TemporaryDirectory() as tmp:
        result = run_entry_point(case_dir, Path(tmp), model_dir)
        produced = output_path(Path(tmp), case_dir)
        if result.returncode != 0 or not produced.is_file():
            raise RuntimeError(f"{case_dir.name}: entry point failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
        target = expected_path(case_dir)
        shutil.rmtree(case_dir / "expected", ignore_errors=True)
        target.parent.mkdir(parents=True)
        shutil.copyfile(produced, target)
    return target


def compare_volumes(output: Path, expected: Path, min_dice: float = MIN_DICE) -> tuple[bool, str]:
    """Same grid, same label set, and Dice >= ``min_dice`` for every expected structure;
    returns (passed, one-line summary)."""
    from spider_tools.evaluate import check_grid, read_labels, match, overlap
    from algorithm.io import InputError

    if not output.is_file():
        return False, f"no output {output}"
    try:
        ref_image, ref = read_labels(expected)
        out_image, out = read_labels(output)
        check_grid(ref_image, out_image, output)
    except InputError as err:
        return False, str(err)
    ref_labels, out_labels = set(np.unique(ref).tolist()), set(np.unique(out).tolist())
    if ref_labels != out_labels:
        return False, f"label sets differ: missing {sorted(ref_labels - out_labels)}, extra {sorted(out_labels - ref_labels)}"
    counts = overlap(ref, out)
    dice = {value: 2 * common / (counts.ref_sizes[value] + counts.pred_sizes[pred]) if pred else 0.0 for value, (pred, common) in match(counts).items()}
    if not dice:
        return True, "both empty"
    worst = min(dice, key=dice.get)
    summary = f"{len(dice)} structures, min Dice {dice[worst]:.4f} (label {worst})"
    return dice[worst] >= min_dice, summary


def truth_dice(output: Path, truth: Path) -> dict[str, float]:
    """Class Dice (vertebrae, discs, canal) of an output mask against a true mask on its grid."""
    from spider_tools.evaluate import check_grid, class_dice, read_labels

    ref_image, ref = read_labels(truth)
    out_image, out = read_labels(output)
    check_grid(ref_image, out_image, output)
    return class_dice(ref, out)


def check_truth(case_dir: Path, output: Path) -> tuple[bool, str]:
    """Class Dice of ``output`` against the case's truth, each at least the case's floor;
    returns (passed, one-line summary)."""
    from algorithm.io import InputError

    try:
        data = json.loads((case_dir / FLOORS_NAME).read_text())
        floors = {key: float(data[key]) for key in CLASS_KEYS}
        dice = truth_dice(output, truth_path(case_dir))
    except (OSError, ValueError, KeyError) as err:
        return False, f"no class-Dice floors or truth ({type(err).__name__}: {err}; make them with: python -m spider_tools.samples floors)"
    except InputError as err:
        return False, str(err)
    low = [key for key in CLASS_KEYS if not dice[key] >= floors[key]]  # NaN (class missing from both) fails too
    summary = (f"class Dice vs truth {'/'.join(f'{dice[k]:.3f}' for k in CLASS_KEYS)} (floors {'/'.join(f'{floors[k]:.2f}' for k in CLASS_KEYS)}"
               + (f"; below: {', '.join(low)})" if low else ")"))
    return not low, summary


def write_floors(case_dir: Path, margin: float = FLOOR_MARGIN) -> dict:
    """Set a case's class-Dice floors to its expected output's class Dice against the truth, less
    ``margin``, rounded down to 0.01; record the measured values beside them."""
    dice = truth_dice(expected_path(case_dir), truth_path(case_dir))
    data = {key: max(0.0, math.floor((dice[key] - margin) * 100) / 100) for key in CLASS_KEYS}
    data["measured"] = {key: round(dice[key], 4) for key in CLASS_KEYS}
    data["margin"] = margin
    (case_dir / FLOORS_NAME).write_text(json.dumps(data, indent=2) + "\n")
    return data


def compare_case(case_dir: Path, output_dir: Path, min_dice: float = MIN_DICE) -> tuple[bool, str]:
    """Compare the output the entry point wrote under ``output_dir`` with the case's expected
    output (regression) and with its truth (class-Dice floors)."""
    try:
        expected = expected_path(case_dir)
    except FileNotFoundError as err:
        return False, str(err)
    if not expected.is_file():
        return False, "no expected output (make it with: python -m spider_tools.samples expected)"
    output = output_path(output_dir, case_dir)
    passed, summary = compare_volumes(output, expected, min_dice)
    if not output.is_file():
        return False, summary
    accurate, accuracy = check_truth(case_dir, output)
    return passed and accurate, f"{summary}; {accuracy}"


def check_model_record(cases_dir: Path = CASES_DIR, model_dir: Path | None = None) -> tuple[bool, str]:
    """Whether the expected outputs in ``cases_dir`` were made with the model the entry point
    uses (MODEL.json); returns (same, one-line summary)."""
    from algorithm.io import InputError

    model = resolve_model_dir(model_dir)
    try:
        made_with = json.loads((cases_dir / MODEL_RECORD).read_text())
        current = model_record(model)
    except (OSError, ValueError, InputError) as err:
        return False, f"cannot compare {cases_dir / MODEL_RECORD} with the model in {model}: {err}"
    if {key: made_with.get(key) for key in current} != current:
        return False, f"the expected outputs in {cases_dir} were made with another model than {model} (regenerate: python -m spider_tools.samples expected)"
    return True, f"expected outputs made with the model in {model}"


def case_dirs(cases_dir: Path) -> list[Path]:
    """The case folders of a cases folder."""
    return sorted(p for p in cases_dir.iterdir() if (p / "input").is_dir())


def make_inputs(cases_dir: Path) -> None:
    """Write the synthetic cases from their seeds and copy the real ones where ../shared/data has them."""
    for spec in CASES:
        print(f"wrote {write_inputs(spec, cases_dir)}")
    for case in REAL_CASES:
        if case.source.is_dir():
            print(f"copied {copy_real_case(case, cases_dir)}")
        else:
            print(f"{case.key}: {case.source} not found, kept as it is")


def make_expected(cases_dir: Path, model_dir: Path | None = None) -> bool:
    """Run the entry point on every case, store its outputs as expected outputs and the model's
    record in MODEL.json; print each output's class Dice against the truth. False if any is
    below its floors."""
    passed = True
    for case_dir in case_dirs(cases_dir):
        target = write_expected(case_dir, model_dir)
        accurate, accuracy = check_truth(case_dir, target)
        print(f"wrote {target}: {accuracy}")
        passed &= accurate
    model = resolve_model_dir(model_dir)
    (cases_dir / MODEL_RECORD).write_text(json.dumps(model_record(model), indent=2) + "\n")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spider_tools.samples", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("make", "write the case inputs and truths (synthetic from seeds, real from ../shared/data), then their expected outputs"),
                       ("expected", "regenerate the expected outputs and MODEL.json, and report class Dice against the truths"),
                       ("floors", "set each case's class-Dice floors to its expected output's class Dice against the truth, less --margin"),
                       ("check-model", "check that MODEL.json names the model the entry point uses")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--cases", type=Path, default=CASES_DIR, help="cases folder (default: test/cases)")
        cmd.add_argument("--model", type=Path, default=None, help="model folder (default: the entry point's)")
        if name == "floors":
            cmd.add_argument("--margin", type=float, default=FLOOR_MARGIN, help="floor = measured class Dice - margin (default %(default)s)")
    cmp = sub.add_parser("compare", help="check one case's output against its expected output and its truth")
    cmp.add_argument("case_dir", type=Path)
    cmp.add_argument("output_dir", type=Path, help="the OUTPUT folder given to the entry point")
    cmp.add_argument("--min-dice", type=float, default=MIN_DICE)
    args = parser.parse_args(argv)
    if args.command in ("compare", "check-model"):
        passed, summary = compare_case(args.case_dir, args.output_dir, args.min_dice) if args.command == "compare" else check_model_record(args.cases, args.model)
        name = args.case_dir.name if args.command == "compare" else MODEL_RECORD
        print(f"{'PASS' if passed else 'FAIL'} {name}: {summary}")
        return 0 if passed else 1
    from algorithm.io import InputError

    try:
        if args.command == "floors":
            for case_dir in case_dirs(args.cases):
                data = write_floors(case_dir, args.margin)
                print(f"{case_dir.name}: measured {data['measured']}, floors {', '.join(f'{k} {data[k]:.2f}' for k in CLASS_KEYS)}")
            return 0
        if args.command == "make":
            make_inputs(args.cases)
        return 0 if make_expected(args.cases, args.model) else 1
    except (RuntimeError, OSError, InputError) as err:
        print(f"samples: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
