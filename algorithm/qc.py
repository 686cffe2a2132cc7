"""Quality-control output for one segmented volume: a PNG of sagittal slices, a JSON of volumes
and per-level measurements, and the measurements as CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from algorithm.labels import CANAL_LABEL, is_disc, is_vertebra

if TYPE_CHECKING:
    from algorithm.measure import Level

PANELS = 3  # sagittal slices shown, centred on the labelled slab
MIN_TEXT_PIXELS = 20  # a structure needs this many pixels in a slice to get its number written


def structure_volumes(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict:
    """Volume in ml per label value (keys are the values as strings) and per class."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    ml = counts * float(np.prod(spacing)) / 1000.0
    keep = values != 0
    values, ml = values[keep], ml[keep]
    classes = {
        "vertebra": is_vertebra(values),
        "disc": is_disc(values),
        "canal": values == CANAL_LABEL,
    }
    return {
        "unit": "ml",
        "structures": {str(int(v)): round(float(m), 3) for v, m in zip(values, ml)},
        "classes": {name: round(float(ml[sel].sum()), 3) for name, sel in classes.items()},
        "counts": {name: int(sel.sum()) for name, sel in classes.items()},
    }


def qc_slices(labels: np.ndarray, panels: int = PANELS) -> list[int]:
    """Sagittal slice indices spread over the middle half of the labelled slab (whole volume if empty)."""
    hit = np.flatnonzero(np.asarray(labels).any(axis=(1, 2)))
    lo, hi = (int(hit[0]), int(hit[-1])) if len(hit) else (0, labels.shape[0] - 1)
    middle, half = (lo + hi) / 2, (hi - lo) / 4
    picks = np.linspace(middle - half, middle + half, panels) if panels > 1 else [middle]
    return sorted({int(round(p)) for p in picks})


def write_qc(volume: np.ndarray, labels: np.ndarray, spacing, out_dir: Path, name: str, actions: list[dict] | None = None, model: str = "") -> tuple[Path, Path]:
    """Write <name>_qc.png, <name>_volumes.json (volumes and measurements) and
    <name>_measurements.csv into out_dir; return the PNG and JSON paths.

    ``actions``: post-processing records (postprocess's ``log``), written under "postprocess";
    ``model``: the name of the model that segmented it, written under "model".

    volume and labels are canonical arrays (sagittal slices, superior->inferior, anterior->posterior).
    """
    from algorithm.measure import as_json, measure, write_csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, js = out_dir / f"{name}_qc.png", out_dir / f"{name}_volumes.json"
    levels = measure(labels, spacing)
    record = {**({"model": model} if model else {}), **structure_volumes(labels, spacing), "measurements": as_json(levels)}
    if actions is not None:
        record["postprocess"] = {"frame": "mm from the first voxel: right->left, superior->inferior, anterior->posterior", "actions": actions}
    js.write_text(json.dumps(record, indent=2) + "\n")
    write_csv(levels, out_dir / f"{name}_measurements.csv")
    _plot(np.asarray(volume), np.asarray(labels), spacing, png, name, levels)
    return png, js


def _colours(values: np.ndarray) -> np.ndarray:
    """RGBA per label value: vertebrae and discs cycle through a qualitative map, the canal is yellow."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    shift = np.where(is_disc(values), 3, 0)  # a disc differs in colour from the vertebra above it
    out = np.array([cmap((int(v) * 7 + int(d)) % 20) for v, d in zip(values, shift)], dtype=float).reshape(-1, 4)
    out[values == CANAL_LABEL] = (1.0, 0.85, 0.0, 1.0)
    return out


def _plot(volume: np.ndarray, labels: np.ndarray, spacing, path: Path, title: str, levels: Sequence[Level] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patheffects as effects
    import matplotlib.pyplot as plt

    slices = qc_slices(labels)
    measured = [level.slice for level in levels if level.slice is not None]
    panels = [(s, f"sagittal slice {s}") for s in slices]
    if measured:
        mid = int(np.bincount(measured).argmax())
        panels.append((mid, f"measurements in mm, on slice {mid}"))
    values = np.unique(labels)
    lut = np.zeros((int(values.max()) + 1 if len(values) else 1, 4))
    lut[values] = _colours(values)
    lut[0] = 0.0
    lo, hi = np.percentile(volume, (1, 99)) if volume.size else (0.0, 1.0)
    rows, cols = labels.shape[1] * spacing[1], labels.shape[2] * spacing[2]
    width = 4.0
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), width * rows / cols + 0.6), squeeze=False)
    outline = [effects.withStroke(linewidth=2, foreground="black")]
    for k, (ax, (s, caption)) in enumerate(zip(axes[0], panels)):
        extent = (0, cols, rows, 0)  # mm, so every pixel has its true aspect
        ax.imshow(volume[s], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, extent=extent, interpolation="nearest")
        overlay = lut[labels[s]]
        overlay[..., 3] *= 0.45
        ax.imshow(overlay, extent=extent, interpolation="nearest")
        if k == len(slices):
            _draw_measurements(ax, levels, spacing, outline)
        else:
            for v in values[values > 0]:
                r, c = np.nonzero(labels[s] == v)
                if len(r) >= MIN_TEXT_PIXELS:
                    ax.text((c.mean() + 0.5) * spacing[2], (r.mean() + 0.5) * spacing[1], str(int(v)), color="white",
                            fontsize=7, ha="center", va="center", path_effects=outline)
        ax.set_title(caption, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MEASURE_COLOURS = {"vertebra": "cyan", "disc": "magenta", "canal": "yellow"}


def _draw_measurements(ax, levels: Sequence[Level], spacing, outline) -> None:
    """Each measured chord as a line (pixel centres lie half a pixel into the mm extent); the
    middle height of each structure written in front of it, the canal diameter behind the canal."""
    shift = np.array([spacing[1], spacing[2]]) / 2

    def line(chord, colour) -> np.ndarray:
        ends = np.array([chord.start, chord.end]) + shift  # (S-I, A-P) mm
        ax.plot(ends[:, 1], ends[:, 0], color=colour, linewidth=0.9)
        return ends

    for level in levels:
        colour = MEASURE_COLOURS[level.structure]
        ends = {name: line(chord, colour) for name, chord in level.heights.items() if chord is not None}
        if "middle" in ends:
            front = min(e[:, 1].min() for e in ends.values())
            ax.text(front - 1.5, ends["middle"][:, 0].mean(), f"{level.heights['middle'].mm:.1f}", color=colour, fontsize=5,
                    ha="right", va="center", path_effects=outline)
        if level.canal is not None:
            ends = line(level.canal, MEASURE_COLOURS["canal"])
            ax.text(ends[:, 1].max() + 1.5, ends[:, 0].mean(), f"{level.canal.mm:.1f}", color=MEASURE_COLOURS["canal"], fontsize=5,
                    va="center", path_effects=outline)
