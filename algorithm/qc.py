"""Quality-control output for one segmented volume: a PNG of sagittal slices, a JSON of volumes
and per-level measurements, and the measurements as CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from algorithm.labels import CANAL_LABEL, is_disc, is_vertebra

if TYPE_CHECKING:
    from algorithm.measure import Level

PANELS = 3  # sagittal slices shown, centred on the labelled slab
MEASURE_PANELS = 3  # at most this many measurement panels, one per slice structures were measured in
MIN_TEXT_PIXELS = 20  # a structure needs this many pixels in a slice to get its number written
REVIEW_PROBABILITY = 0.85  # listed for review below this mean probability (docs/postprocess.md: chosen on 389 structures)


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


def structure_probabilities(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Mean network probability of its chosen class over each structure's voxels (3 decimals), keyed
    by the label value as a string."""
    flat = np.asarray(labels).ravel().astype(np.int64)
    offset = flat.min()
    sums = np.bincount(flat - offset, weights=np.asarray(probability, np.float64).ravel())
    counts = np.bincount(flat - offset)
    return {str(int(v)): round(float(sums[v - offset] / counts[v - offset]), 3) for v in np.unique(flat) if v != 0}


def structure_centroids(labels: np.ndarray, to_lps: Callable[[np.ndarray], np.ndarray]) -> dict[str, list[float]]:
    """Centroid of each structure in physical LPS mm (0.1 mm), keyed by its label value as a string."""
    from scipy import ndimage as ndi

    values = [int(v) for v in np.unique(labels) if v]
    if not values:
        return {}
    centres = np.array(ndi.center_of_mass(np.ones(labels.shape, bool), labels, values))
    return {str(v): [round(float(c), 1) for c in point] for v, point in zip(values, to_lps(centres))}


def qc_slices(labels: np.ndarray, panels: int = PANELS) -> list[int]:
    """Sagittal slice indices spread over the middle half of the labelled slab (whole volume if empty)."""
    hit = np.flatnonzero(np.asarray(labels).any(axis=(1, 2)))
    lo, hi = (int(hit[0]), int(hit[-1])) if len(hit) else (0, labels.shape[0] - 1)
    middle, half = (lo + hi) / 2, (hi - lo) / 4
    picks = np.linspace(middle - half, middle + half, panels) if panels > 1 else [middle]
    return sorted({int(round(p)) for p in picks})


def write_qc(volume: np.ndarray, labels: np.ndarray, spacing, out_dir: Path, name: str, actions: list[dict] | None = None,
             to_lps: Callable[[np.ndarray], np.ndarray] | None = None, model: str = "", probability: np.ndarray | None = None) -> tuple[Path, Path]:
    """Write <name>_qc.png, <name>_volumes.json (volumes and measurements) and
    <name>_measurements.csv into out_dir; return the PNG and JSON paths.

    ``actions``: post-processing records (postprocess's ``log``), written under "postprocess";
    ``to_lps``: canonical voxel indices (N, 3) -> physical LPS mm, for each structure's centroid
    ("centroids_lps_mm"; geometry.canonical_to_lps); ``model``: the name of the model that segmented
    it, written under "model"; ``probability``: the network's probability of its chosen class per
    voxel (pipeline.predict_classes), averaged per structure ("probability"), the structures below
    REVIEW_PROBABILITY listed under "review".

    volume and labels are canonical arrays (sagittal slices, superior->inferior, anterior->posterior).
    """
    from algorithm.measure import as_json, measure, write_csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, js = out_dir / f"{name}_qc.png", out_dir / f"{name}_volumes.json"
    levels = measure(labels, spacing)
    record = {**({"model": model} if model else {}), **structure_volumes(labels, spacing), "measurements": as_json(levels)}
    if to_lps is not None:
        record["centroids_lps_mm"] = structure_centroids(labels, to_lps)
    if probability is not None:
        record["probability"] = structure_probabilities(labels, probability)
        record["review"] = {"below_probability": REVIEW_PROBABILITY,
                            "structures": sorted((int(v) for v, p in record["probability"].items() if p < REVIEW_PROBABILITY))}
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
    panels = [(s, f"sagittal slice {s}", ()) for s in slices] + measurement_panels(levels)
    values = np.unique(labels)
    lut = np.zeros((int(values.max()) + 1 if len(values) else 1, 4))
    lut[values] = _colours(values)
    lut[0] = 0.0
    lo, hi = np.percentile(volume, (1, 99)) if volume.size else (0.0, 1.0)
    rows, cols = labels.shape[1] * spacing[1], labels.shape[2] * spacing[2]
    width = 4.0
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), width * rows / cols + 0.6), squeeze=False)
    outline = [effects.withStroke(linewidth=2, foreground="black")]
    for k, (ax, (s, caption, drawn)) in enumerate(zip(axes[0], panels)):
        extent = (0, cols, rows, 0)  # mm, so every pixel has its true aspect
        ax.imshow(volume[s], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, extent=extent, interpolation="nearest")
        overlay = lut[labels[s]]
        overlay[..., 3] *= 0.45
        ax.imshow(overlay, extent=extent, interpolation="nearest")
        if k >= len(slices):
            _draw_measurements(ax, drawn, s, spacing, outline)
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


def measurement_panels(levels: Sequence[Level], most: int = MEASURE_PANELS) -> list[tuple[int, str, list]]:
    """(slice, caption, levels) of each measurement panel: one per slice structures were measured in, the
    ``most`` slices with the most structures; a structure measured in another slice goes on the panel
    nearest to it and is drawn dashed (its lines belong to a slice a few millimetres away)."""
    measured = [level for level in levels if level.slice is not None and any(c is not None for c in level.heights.values())]
    if not measured:
        return []
    counts = np.bincount([level.slice for level in measured])
    chosen = sorted(np.argsort(-counts, kind="stable")[: min(most, int((counts > 0).sum()))].tolist())
    groups: dict[int, list] = {s: [] for s in chosen}
    for level in measured:
        groups[min(chosen, key=lambda s: abs(s - level.slice))].append(level)
    return [(s, f"measurements in mm, slice {s}" + (" (dashed: from a slice nearby)" if any(lv.slice != s for lv in group) else ""), group)
            for s, group in groups.items()]


def _draw_measurements(ax, levels: Sequence[Level], shown: int, spacing, outline) -> None:
    """Each measured chord as a line (pixel centres lie half a pixel into the mm extent), dashed where the
    structure was measured in another slice than ``shown``; the middle height of each structure written in
    front of it, the canal diameter behind the canal."""
    shift = np.array([spacing[1], spacing[2]]) / 2

    for level in levels:
        style = "-" if level.slice == shown else "--"

        def line(chord, colour, style=style) -> np.ndarray:
            ends = np.array([chord.start, chord.end]) + shift  # (S-I, A-P) mm
            ax.plot(ends[:, 1], ends[:, 0], color=colour, linewidth=0.9, linestyle=style)
            return ends

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
