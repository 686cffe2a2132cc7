"""Training logs: CSV, TensorBoard (when installed) and a training-curve PNG, all in the run folder."""

from __future__ import annotations

import csv
from pathlib import Path

LOG_CSV = "log.csv"
CURVES_PNG = "curves.png"


class Logger:
    """Appends one row per epoch to log.csv, mirrors it to TensorBoard and redraws curves.png."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / LOG_CSV
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))
        except ImportError:
            self.writer = None

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def log(self, row: dict) -> None:
        rows = [r for r in self.rows() if int(r["epoch"]) < row["epoch"]] + [row]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(rows)
        if self.writer:
            for key, value in row.items():
                if key != "epoch" and value not in ("", None):
                    self.writer.add_scalar(key, float(value), row["epoch"])
            self.writer.flush()
        plot_curves(rows, self.out_dir / CURVES_PNG)

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and validation Dice against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in ("", None)]
        return zip(*pts) if pts else ((), ())

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6) if not any(":" in key for key in (rows[0] if rows else {})) else (15, 6))
    a.plot(*series("loss"), label="train loss (Dice + CE)")
    a.set_xlabel("epoch")
    a.set_yscale("log")
    a.legend()
    named_sets = [key for key in (rows[0] if rows else {}) if ":" in key]  # --validation 2d: "<set>:<class>", pooled
    for key in ("ClassDiceVertebrae", "ClassDiceDiscs", "ClassDiceSpinalCanal", *named_sets):
        if any(r.get(key) not in ("", None) for r in rows):
            b.plot(*series(key), marker="o", markersize=3, label=key.replace("ClassDice", ""))
    if named_sets:
        b.plot(*series("mean"), marker="o", color="black", linewidth=2.5, label="selection score")
    b.set_xlabel("epoch")
    b.set_ylabel("validation class Dice (post-processed)")
    if b.get_legend_handles_labels()[0]:  # no validation yet: nothing to name
        b.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m train.report RUN_DIR [RUN_DIR ...] [--out PNG]``: redraw training curves from
    log.csv; several runs (e.g. a run and its ``--init`` continuation) are drawn one after another."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m train.report", description=main.__doc__)
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, help="default: the first run's curves.png")
    args = parser.parse_args(argv)
    rows, offset = [], 0
    for run in args.run_dirs:
        log = run / LOG_CSV
        if not log.is_file():
            parser.error(f"{log}: no such file")
        with log.open(newline="") as f:
            run_rows = list(csv.DictReader(f))
        rows += [{**r, "epoch": int(r["epoch"]) + offset} for r in run_rows]
        offset += len(run_rows)
    plot_curves(rows, args.out or args.run_dirs[0] / CURVES_PNG)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
