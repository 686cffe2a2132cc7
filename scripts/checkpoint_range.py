"""How far the checkpoints of 2D runs reached on the real selection sets: per run, the best value of
each real-slice figure over all its validations, and the mean over its last 10 (where it settles).

    python scripts/checkpoint_range.py runs/t1t2 runs/t1t2-ft ...      # log.csv of spider-train --validation 2d
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

COLUMNS = {
    "T2 slices with canal, vertebra": "t2 slices, with canal:vertebra",
    "disc": "t2 slices, with canal:disc",
    "canal": "t2 slices, with canal:canal",
    "central T2 vertebra": "T2 central slices (vertebra):vertebra",
    "central T1 vertebra": "T1 central slices (vertebra):vertebra",
}
SETTLED = 10


def ranges(log: Path) -> tuple[int, dict[str, tuple[float, float]]]:
    """(validations, figure -> (best, mean of the last SETTLED)) of one run's log.csv."""
    with log.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("mean")]
    figures = {}
    for name, column in COLUMNS.items():
        values = [float(r[column]) for r in rows]
        last = values[-SETTLED:]
        figures[name] = (max(values), sum(last) / len(last))
    return len(rows), figures


def main() -> None:
    print("| run | validations | " + " | ".join(COLUMNS) + " |")
    print("| --- | --- |" + " --- |" * len(COLUMNS))
    for run in sys.argv[1:]:
        count, figures = ranges(Path(run) / "log.csv")
        print(f"| {run} | {count} | " + " | ".join(f"{best:.3f} ({settled:.3f})" for best, settled in figures.values()) + " |")


if __name__ == "__main__":
    main()
