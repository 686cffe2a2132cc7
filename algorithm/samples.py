"""Sample cases for container tests, in grand-challenge layout, and the check of an output against them.

    test/cases/<name>/input/images/sagittal-spine-mri/<name>.mha    synthetic volume
    test/cases/<name>/input/inputs.json                             grand-challenge's socket list
    test/cases/<name>/expected/images/sagittal-spine-mr-segmentation/<name>.mha

Expected outputs come from running the bundled model through the container's entry point
(``python -m algorithm -i INPUT -o OUTPUT``); after a new model is in place regenerate them with
``python -m algorithm.samples expected`` (``make`` also rewrites the synthetic inputs).
"""

from __future__ import annotations

import argparse
import json
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
MODEL_RECORD = "MODEL.json"  # in the cases folder: which model made the expected outputs
MIN_DICE = 0.99
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


def write_inputs(spec: CaseSpec, cases_dir: Path) -> Path:
    """Synthesize a case's volume and write its input folder; return the case folder."""
    import SimpleITK as sitk

    from algorithm.synthetic import synthesize

    case_dir = cases_dir / spec.key
    shutil.rmtree(case_dir / "input", ignore_errors=True)
    image, _ = synthesize(spec.size, spec.spacing, spec.direction, contrast=spec.contrast, seed=spec.seed)
    path = case_dir / "input" / "images" / INPUT_SLUG / f"{spec.name}.mha"
    path.parent.mkdir(parents=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    (case_dir / "input" / "inputs.json").write_text(json.dumps(inputs_json(spec.name), indent=2) + "\n")
    return case_dir


def run_entry_point(case_dir: Path, output_dir: Path, model_dir: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m algorithm -i CASE/input -o OUTPUT`` (the container's entry point) on the CPU."""
    command = [sys.executable, "-m", "algorithm", "-i", str(case_dir / "input"), "-o", str(output_dir), "--device", "cpu"]
    if model_dir is not None:
        command += ["--model", str(model_dir)]
    return subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "2"})


def resolve_model_dir(model_dir: Path | None = None) -> Path:
    """The model folder the entry point uses for ``--model model_dir`` (None: its default)."""
    from algorithm.cli import model_dir as cli_model_dir
    from algorithm.pipeline import DEFAULT_MODEL_DIR

    return cli_model_dir(model_dir) or DEFAULT_MODEL_DIR


def model_record(model_dir: Path) -> dict:
    """What identifies a model's outputs: the SHA-256 of its ONNX file and its config."""
    from algorithm.backends import ONNX_NAME
    from algorithm.config import CONFIG_NAME
    from algorithm.tensorrt_backend import sha256

    return {"onnx_sha256": sha256(model_dir / ONNX_NAME), "config_sha256": sha256(model_dir / CONFIG_NAME)}


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
    from algorithm.evaluate import check_grid, read_labels, match, overlap
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


def compare_case(case_dir: Path, output_dir: Path, min_dice: float = MIN_DICE) -> tuple[bool, str]:
    """Compare the output the entry point wrote under ``output_dir`` with the case's expected output."""
    try:
        expected = expected_path(case_dir)
    except FileNotFoundError as err:
        return False, str(err)
    if not expected.is_file():
        return False, "no expected output (make it with: python -m algorithm.samples expected)"
    return compare_volumes(output_path(output_dir, case_dir), expected, min_dice)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m algorithm.samples", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("make", "synthesize the case inputs, then their expected outputs"), ("expected", "regenerate the expected outputs only")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--cases", type=Path, default=CASES_DIR, help="cases folder (default: test/cases)")
        cmd.add_argument("--model", type=Path, default=None, help="model folder (default: the entry point's)")
    cmp = sub.add_parser("compare", help="check one case's output against its expected output")
    cmp.add_argument("case_dir", type=Path)
    cmp.add_argument("output_dir", type=Path, help="the OUTPUT folder given to the entry point")
    cmp.add_argument("--min-dice", type=float, default=MIN_DICE)
    args = parser.parse_args(argv)
    if args.command == "compare":
        passed, summary = compare_case(args.case_dir, args.output_dir, args.min_dice)
        print(f"{'PASS' if passed else 'FAIL'} {args.case_dir.name}: {summary}")
        return 0 if passed else 1
    try:
        dirs = [write_inputs(spec, args.cases) for spec in CASES] if args.command == "make" else sorted(p for p in args.cases.iterdir() if (p / "input").is_dir())
        for case_dir in dirs:
            print(f"wrote {write_expected(case_dir, args.model)}")
        model = resolve_model_dir(args.model)
        (args.cases / MODEL_RECORD).write_text(json.dumps(model_record(model) | {"model": model.name}, indent=2) + "\n")
    except (RuntimeError, FileNotFoundError, OSError) as err:
        print(f"samples: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
