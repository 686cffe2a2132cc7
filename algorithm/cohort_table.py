"""What a cohort run leaves besides the masks, without any engine: one row per structure per case
(OUT/cohort.csv), a per-case record beside it that makes a case complete for ``--resume``
(OUT/cohort/<case>.csv), and the run's summary (OUT/run.json). Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from algorithm.io import read_image, write_text

TABLE = "cohort.csv"
RECORDS = "cohort"  # OUT/cohort/<case>.csv: a case's rows, written after its mask
SUMMARY = "run.json"
COLUMNS = ("case", "status", "label", "structure", "volume_ml", "anterior_mm", "middle_mm", "posterior_mm", "canal_ap_mm", "review", "error")
# review flags (several in one cell, separated by ";"):
PARTIAL = "partial"  # a partially visible vertebra (label 101-125)
NOT_MEASURED = "not_measured"  # heights not measured: under measure.MIN_AREA_MM2 in its slice, or cut by the image edge
NO_CANAL = "no_canal"  # a disc without a canal diameter (no canal behind it)
EMPTY = "empty"  # the mask holds no structure at all (the case's one row)


def structure_rows(case: str, labels: np.ndarray, spacing: tuple[float, float, float]) -> list[dict]:
    """One row per structure of a canonical mask: volume (ml), heights and canal diameter (mm)
    where measured, review flags; one row flagged ``empty`` for a mask without structures."""
    from algorithm.labels import CANAL_LABEL, PARTIAL_OFFSET, is_disc
    from algorithm.measure import as_json, measure
    from algorithm.qc import structure_volumes

    volumes = structure_volumes(labels, spacing)["structures"]
    measured = as_json(measure(labels, spacing))
    levels = {**measured["vertebrae"], **measured["discs"]}
    if not volumes:
        return [{"case": case, "status": "ok", "review": EMPTY}]
    rows = []
    for label, ml in volumes.items():
        value = int(label)
        level = levels.get(label, {})
        structure = "canal" if value == CANAL_LABEL else "disc" if is_disc(value) else "vertebra"
        flags = []
        if structure == "vertebra" and value > PARTIAL_OFFSET:
            flags.append(PARTIAL)
        if structure != "canal" and level.get("middle") is None:
            flags.append(NOT_MEASURED)
        if structure == "disc" and level.get("canal_ap_diameter") is None:
            flags.append(NO_CANAL)
        rows.append({"case": case, "status": "ok", "label": value, "structure": structure, "volume_ml": ml,
                     "anterior_mm": level.get("anterior"), "middle_mm": level.get("middle"), "posterior_mm": level.get("posterior"),
                     "canal_ap_mm": level.get("canal_ap_diameter"), "review": ";".join(flags)})
    return rows


def mask_rows(case: str, mask_path: Path) -> list[dict]:
    """The rows of a mask already written (read back from ``mask_path``)."""
    from algorithm.geometry import canonical_array

    labels, spacing = canonical_array(read_image(mask_path))
    return structure_rows(case, labels, spacing)


def failure_row(case: str, reason: str) -> dict:
    """The one row of a case that failed, with its one-line reason."""
    return {"case": case, "status": "failed", "error": reason}


def to_csv(rows: list[dict]) -> str:
    """Rows as CSV text under the COLUMNS header; empty cells where a value is missing."""
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return text.getvalue()


def record_path(out: Path, case: str) -> Path:
    return out / RECORDS / f"{case}.csv"


def write_record(out: Path, case: str, rows: list[dict]) -> Path:
    """A finished case's rows, written after its mask: with it, the case is complete."""
    return write_text(to_csv(rows), record_path(out, case))


def read_record(out: Path, case: str) -> list[dict]:
    """The rows of a case's record (cells as text, as in cohort.csv)."""
    with record_path(out, case).open(newline="") as f:
        return list(csv.DictReader(f))


def complete(out: Path, case: str, mask: Path) -> bool:
    """Both the mask and the case's record exist (each is written atomically, the record last)."""
    return mask.is_file() and record_path(out, case).is_file()


def write_table(out: Path, rows: list[dict]) -> Path:
    """OUT/cohort.csv, rows ordered by case (each case's rows in label order)."""
    return write_text(to_csv(sorted(rows, key=lambda r: str(r["case"]))), out / TABLE)


def write_summary(out: Path, summary: dict) -> Path:
    return write_text(json.dumps(summary, indent=2) + "\n", out / SUMMARY)
