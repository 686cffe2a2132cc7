"""Inspect a SPIDER-layout dataset: counts, geometry, intensities, labels, problems, figures.

Works on a folder with ``images/``, ``masks/`` and an optional ``overview.csv`` (column
``new_file_name`` and ``subset``), or on a folder holding only masks. Writes ``report.md``,
``summary.json`` and PNG figures to the output folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from algorithm.geometry import Orientation, canonical_array, orientation
from algorithm.io import InputError, grid_differences, is_volume_file, read_image, stem
from algorithm.labels import (
    CANAL,
    CANAL_LABEL,
    CLASS_NAMES,
    DISC,
    MAX_INDEX,
    PARTIAL_OFFSET,
    VERTEBRA,
    is_disc,
    is_vertebra,
    is_valid_label,
    numbering_convention,
    to_classes,
)

SEQUENCES = ("t1", "t2", "t2_SPACE")
NAME_RE = re.compile(r"^(?P<case>.+?)_(?P<sequence>t1|t2|t2_SPACE)$")
ITK_AXES = "xyz"
# Letter of each canonical axis's direction (see geometry.py), not flipped / flipped.
CANONICAL_LETTERS = (("L", "R"), ("I", "S"), ("P", "A"))
STRUCTURES = ("vertebra", "partial vertebra", "disc", "canal")
SEQ_COLORS = {"t1": "tab:blue", "t2": "tab:orange", "t2_SPACE": "tab:green"}
CLASS_COLORS = {VERTEBRA: (0.95, 0.85, 0.2), DISC: (0.2, 0.6, 1.0), CANAL: (1.0, 0.3, 0.3)}


# ----------------------------------------------------------------------------- finding files


def parse_name(name: str) -> tuple[str, str | None]:
    """(case id, sequence) from a SPIDER file stem ``<id>_<seq>``; sequence None if unknown."""
    match = NAME_RE.match(name)
    return (match["case"], match["sequence"]) if match else (name, None)


def sort_key(name: str) -> tuple:
    """Natural order: numeric case ids by value, then sequence."""
    case, sequence = parse_name(name)
    return (0, int(case), "", sequence or "") if case.isdigit() else (1, 0, case, sequence or "")


def find_files(data_dir: Path) -> tuple[str, dict[str, dict[str, Path | None]]]:
    """Layout ('spider' or 'masks-only') and, per file stem, its image and mask paths."""
    images, masks = data_dir / "images", data_dir / "masks"
    if images.is_dir() or masks.is_dir():
        layout = "spider"
        found = {"image": _volumes(images), "mask": _volumes(masks)}
    else:
        layout = "masks-only"
        found = {"image": {}, "mask": _volumes(data_dir)}
    names = sorted(set(found["image"]) | set(found["mask"]), key=sort_key)
    return layout, {n: {"image": found["image"].get(n), "mask": found["mask"].get(n)} for n in names}


def _volumes(folder: Path) -> dict[str, Path]:
    return {stem(p): p for p in sorted(folder.iterdir()) if is_volume_file(p)} if folder.is_dir() else {}


def read_subsets(path: Path) -> dict[str, str]:
    """File stem -> subset from overview.csv (empty if the file or its columns are absent)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        stem(Path(row["new_file_name"])): row["subset"]
        for row in rows
        if row.get("new_file_name") and row.get("subset")
    }


# ----------------------------------------------------------------------------- per-file statistics


def orientation_code(orient: Orientation) -> str:
    """Three-letter code (e.g. LPS, PIR): the direction each ITK axis i, j, k points to."""
    code = [""] * 3
    for axis, (numpy_axis, flip) in enumerate(zip(orient.axes, orient.flips)):
        code[2 - numpy_axis] = CANONICAL_LETTERS[axis][flip]
    return "".join(code)


def geometry_stats(image) -> dict:
    """Size, spacing and orientation of an ITK image, in ITK and in canonical terms."""
    orient = orientation(image.GetDirection(), image.GetSpacing())
    size = image.GetSize()
    sagittal = 2 - orient.axes[0]
    return {
        "size": list(size),
        "spacing": [round(s, 4) for s in image.GetSpacing()],
        "orientation": orientation_code(orient),
        "sagittal_axis": ITK_AXES[sagittal],
        "slices": size[sagittal],
        "slice_spacing": round(orient.spacing[0], 4),
        "inplane_size": [size[2 - orient.axes[1]], size[2 - orient.axes[2]]],
        "inplane_spacing": [round(s, 4) for s in orient.spacing[1:]],
    }


def intensity_stats(array: np.ndarray) -> dict:
    """Dtype, extremes, robust range and mean of an image array."""
    p1, p99 = np.percentile(array, (1, 99))
    return {
        "dtype": str(array.dtype),
        "min": float(array.min()),
        "max": float(array.max()),
        "p1": float(p1),
        "p99": float(p99),
        "mean": round(float(array.mean()), 3),
    }


def label_stats(mask: np.ndarray, orient: Orientation) -> dict:
    """Structure counts, numbering convention and volumes (ml) of one SPIDER mask (k, j, i)."""
    values, counts = np.unique(mask, return_counts=True)
    voxel_ml = float(np.prod(orient.spacing)) / 1000.0
    full = [int(v) for v in values if 1 <= v <= MAX_INDEX]
    partial = [int(v) for v in values if PARTIAL_OFFSET < v <= PARTIAL_OFFSET + MAX_INDEX]
    discs = [int(v) for v in values[is_disc(values)]]
    volumes = {str(int(v)): round(float(c) * voxel_ml, 3) for v, c in zip(values, counts) if v != 0 and is_valid_label(v)}
    classes = np.bincount(to_classes(values), weights=counts, minlength=len(CLASS_NAMES))
    return {
        "values": [v.item() for v in values],
        "invalid": [v.item() for v in values[~is_valid_label(values)]],
        "vertebrae": len(full),
        "partial_vertebrae": len(partial),
        "discs": len(discs),
        "canal": bool(np.any(values == CANAL_LABEL)),
        "convention": numbering_convention(orient.to_canonical(mask)),
        "volumes_ml": volumes,
        "class_volumes_ml": {CLASS_NAMES[c]: round(classes[c] * voxel_ml, 3) for c in range(1, len(CLASS_NAMES))},
    }


def _read(path: Path | None, flags: list[str]):
    """The image at ``path``, or None (with a flag if the file exists but cannot be used)."""
    if path is None:
        return None
    try:
        return read_image(path)
    except InputError as err:
        flags.append(f"unreadable: {err}")
        return None


def inspect_file(name: str, image_path: Path | None, mask_path: Path | None, subset: str | None, layout: str) -> dict:
    """Everything the report says about one file stem: geometry, intensities, labels, flags."""
    import SimpleITK as sitk

    case, sequence = parse_name(name)
    flags: list[str] = []
    if sequence is None:
        flags.append("file name is not <id>_<t1|t2|t2_SPACE>")
    if layout == "spider" and image_path is None:
        flags.append("no image for this mask")
    if mask_path is None:
        flags.append("no mask for this image")
    image, mask = _read(image_path, flags), _read(mask_path, flags)
    record = {"name": name, "case": case, "sequence": sequence, "subset": subset, "flags": flags}
    reference = image if image is not None else mask
    if reference is None:
        return record
    record.update(geometry_stats(reference))
    if image is not None:
        record["intensity"] = intensity_stats(sitk.GetArrayViewFromImage(image))
    if mask is not None:
        if image is not None and (diffs := grid_differences(image, mask)):
            flags.append("image and mask grids differ: " + "; ".join(diffs))
        labels = label_stats(sitk.GetArrayViewFromImage(mask), orientation(mask.GetDirection(), mask.GetSpacing()))
        if labels["invalid"]:
            flags.append(f"labels outside the SPIDER scheme: {_short(labels['invalid'])}")
        record["labels"] = labels
    return record


def _short(values: list, n: int = 8) -> str:
    text = ", ".join(str(v) for v in values[:n])
    return text + (f", ... ({len(values)} values)" if len(values) > n else "")


# ----------------------------------------------------------------------------- dataset summary


def summarize(records: list[dict]) -> dict:
    """Counts per sequence and subset, and per-sequence ranges of geometry, intensity and labels."""
    per_sequence = {}
    for seq in sorted({r["sequence"] or "unknown" for r in records}, key=_seq_order):
        rows = [r for r in records if (r["sequence"] or "unknown") == seq]
        geo = [r for r in rows if "size" in r]
        img = [r["intensity"] for r in rows if "intensity" in r]
        lab = [r["labels"] for r in rows if "labels" in r]
        per_sequence[seq] = {
            "files": len(rows),
            "slices": _range([r["slices"] for r in geo]),
            "slice_spacing_mm": _range([r["slice_spacing"] for r in geo]),
            "inplane_spacing_mm": _range([s for r in geo for s in r["inplane_spacing"]]),
            "inplane_size": _range([s for r in geo for s in r["inplane_size"]]),
            "orientations": dict(Counter(f"{r['orientation']} (sagittal = {r['sagittal_axis']})" for r in geo)),
            "dtypes": dict(Counter(i["dtype"] for i in img)),
            "intensity_min": _range([i["min"] for i in img]),
            "intensity_max": _range([i["max"] for i in img]),
            "vertebrae_per_case": _range([lb["vertebrae"] for lb in lab]),
            "partial_vertebrae_per_case": _range([lb["partial_vertebrae"] for lb in lab]),
            "files_with_partial_vertebrae": sum(lb["partial_vertebrae"] > 0 for lb in lab),
            "discs_per_case": _range([lb["discs"] for lb in lab]),
            "files_with_canal": sum(lb["canal"] for lb in lab),
            "conventions": dict(Counter(lb["convention"] for lb in lab)),
            "structure_volume_ml": {s: _range(structure_volumes(lab, s)) for s in STRUCTURES},
        }
    return {
        "files": len(records),
        "sequences": dict(Counter(r["sequence"] or "unknown" for r in records)),
        "subsets": dict(Counter(r["subset"] or "none" for r in records)),
        "sequence_by_subset": dict(Counter(f"{r['sequence'] or 'unknown'}/{r['subset'] or 'none'}" for r in records)),
        "per_sequence": per_sequence,
        "flagged": sum(bool(r["flags"]) for r in records),
    }


def _seq_order(seq: str) -> int:
    return SEQUENCES.index(seq) if seq in SEQUENCES else len(SEQUENCES)


def _range(values: list) -> dict | None:
    """min / median / max of a list (None if empty)."""
    if not values:
        return None
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def structure_of(value: int) -> str | None:
    """Which of STRUCTURES a SPIDER label value is."""
    if 1 <= value <= MAX_INDEX:
        return "vertebra"
    if PARTIAL_OFFSET < value <= PARTIAL_OFFSET + MAX_INDEX:
        return "partial vertebra"
    if is_disc(value):
        return "disc"
    return "canal" if value == CANAL_LABEL else None


def structure_volumes(labels: list[dict], structure: str) -> list[float]:
    """Volumes (ml) of every single structure of one kind over all masks."""
    return [ml for lb in labels for v, ml in lb["volumes_ml"].items() if structure_of(int(v)) == structure]


# ----------------------------------------------------------------------------- figures


def load_canonical(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A volume in the canonical layout (see geometry.py) and its canonical spacing."""
    return canonical_array(read_image(path))


def load_pair(image_path: Path | None, mask_path: Path | None) -> tuple[np.ndarray | None, np.ndarray | None, tuple[float, float, float]]:
    """Canonical image and mask of one file (either may be absent) and their spacing."""
    image, spacing = load_canonical(image_path) if image_path else (None, None)
    mask, mask_spacing = load_canonical(mask_path) if mask_path else (None, None)
    return image, mask, spacing or mask_spacing


def midline_index(mask: np.ndarray | None, n_slices: int) -> int:
    """Sagittal slice with the largest spinal canal area (the middle slice without a canal)."""
    if mask is not None:
        area = (mask == CANAL_LABEL).sum(axis=(1, 2))
        if area.max() > 0:
            return int(np.argmax(area))
    return n_slices // 2


def _window(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image, (1, 99.5))
    return float(lo), float(max(hi, lo + 1e-6))


def _overlay(mask2d: np.ndarray) -> np.ndarray:
    """RGBA image of the class colours of a 2D SPIDER mask (transparent background)."""
    classes = to_classes(mask2d)
    rgba = np.zeros(classes.shape + (4,), dtype=np.float32)
    for cls, color in CLASS_COLORS.items():
        rgba[classes == cls] = (*color, 1.0)
    return rgba


def show_slice(ax, image2d, mask2d, spacing: tuple[float, float], annotate: bool = False) -> None:
    """Draw a 2D slice to scale (mm) with the mask overlaid; image or mask may be None."""
    rows, cols = (image2d if image2d is not None else mask2d).shape
    extent = (0, cols * spacing[1], rows * spacing[0], 0)
    if image2d is not None:
        lo, hi = _window(image2d)
        ax.imshow(image2d, cmap="gray", extent=extent, vmin=lo, vmax=hi, interpolation="nearest")
    else:
        ax.imshow(np.zeros((rows, cols)), cmap="gray", extent=extent, vmin=0, vmax=1)
    if mask2d is not None:
        ax.imshow(_overlay(mask2d), extent=extent, alpha=0.45 if image2d is not None else 0.9, interpolation="nearest")
        if annotate:
            _annotate_labels(ax, mask2d, spacing)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)


def _annotate_labels(ax, mask2d: np.ndarray, spacing: tuple[float, float]) -> None:
    """Write each vertebra's label value at its centre in the slice."""
    for value in np.unique(mask2d[is_vertebra(mask2d)]):
        r, c = np.nonzero(mask2d == value)
        ax.text(c.mean() * spacing[1], r.mean() * spacing[0], str(int(value)), color="black", fontsize=6, ha="center", va="center")


def plot_examples(cases: list[tuple[dict, Path | None, Path | None]], path: Path, dpi: int) -> None:
    """Mid-sagittal slice with the mask overlaid: one row per sequence, one panel per file."""
    import matplotlib.pyplot as plt

    seqs = list(dict.fromkeys(record["sequence"] for record, _, _ in cases))
    cols = max(Counter(record["sequence"] for record, _, _ in cases).values())
    fig, axes = plt.subplots(len(seqs), cols, figsize=(2.7 * cols, 3.2 * len(seqs)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    used = Counter()
    for record, image_path, mask_path in cases:
        row = seqs.index(record["sequence"])
        ax = axes[row][used[row]]
        used[row] += 1
        image, mask, spacing = load_pair(image_path, mask_path)
        index = midline_index(mask, (image if image is not None else mask).shape[0])
        ax.set_axis_on()
        show_slice(ax, None if image is None else image[index], None if mask is None else mask[index], spacing[1:], annotate=True)
        ax.set_title(f"{record['name']}: slice {index}\npixel {spacing[1]:.2f} x {spacing[2]:.2f} mm", fontsize=7)
        ax.set_xlabel("anterior -> posterior (mm)", fontsize=6)
        ax.set_ylabel("superior -> inferior (mm)", fontsize=6)
    _save(fig, path, dpi)


def plot_three_axes(record: dict, image_path: Path | None, mask_path: Path | None, path: Path, dpi: int) -> None:
    """One volume along its sagittal, coronal and axial planes, drawn to scale in mm."""
    import matplotlib.pyplot as plt

    image, mask, spacing = load_pair(image_path, mask_path)
    volume = image if image is not None else mask
    sag = midline_index(mask, volume.shape[0])
    vertebrae = is_vertebra(mask) if mask is not None else None
    if vertebrae is not None and vertebrae.any():
        _, si, ap = np.nonzero(vertebrae)
        cor, axi = int(np.median(ap)), int(np.median(si))
    else:
        cor, axi = volume.shape[2] // 2, volume.shape[1] // 2
    views = [
        ("sagittal", lambda v: v[sag], (spacing[1], spacing[2]), "A -> P", "S -> I"),
        ("coronal", lambda v: v[:, :, cor].T, (spacing[1], spacing[0]), "R -> L", "S -> I"),
        ("axial", lambda v: v[:, axi, :].T, (spacing[2], spacing[0]), "R -> L", "A -> P"),
    ]
    widths = np.array([volume.shape[2] * spacing[2], volume.shape[0] * spacing[0], volume.shape[0] * spacing[0]])
    fig, axes = plt.subplots(1, 3, figsize=(9, 4), gridspec_kw={"width_ratios": np.maximum(widths, 0.35 * widths.max())})
    for ax, (title, cut, sp, xlabel, ylabel) in zip(axes, views):
        show_slice(ax, None if image is None else cut(image), None if mask is None else cut(mask), sp)
        ax.set_title(f"{title}\npixel {sp[0]:.2f} x {sp[1]:.2f} mm", fontsize=7)
        ax.set_xlabel(f"{xlabel} (mm)", fontsize=6)
        ax.set_ylabel(f"{ylabel} (mm)", fontsize=6)
    axes[0].axvline((cor + 0.5) * spacing[2], color="cyan", lw=0.6)
    axes[0].axhline((axi + 0.5) * spacing[1], color="magenta", lw=0.6)
    for ax in axes[1:]:
        ax.axvline((sag + 0.5) * spacing[0], color="lime", lw=0.6)
    fig.suptitle(
        f"{record['name']}: {record['orientation']} file, sagittal = ITK {record['sagittal_axis']}, "
        f"spacing (R-L, S-I, A-P) {spacing[0]:.2f} x {spacing[1]:.2f} x {spacing[2]:.2f} mm",
        fontsize=8,
    )
    _save(fig, path, dpi)


def plot_geometry(records: list[dict], path: Path, dpi: int) -> None:
    """Histograms of slice spacing, in-plane spacing, slice count, and orientation counts."""
    import matplotlib.pyplot as plt

    geo = [r for r in records if "size" in r]
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.6))
    _hist_by_sequence(axes[0], geo, lambda r: [r["slice_spacing"]], "slice spacing (mm)")
    _hist_by_sequence(axes[1], geo, lambda r: r["inplane_spacing"], "in-plane spacing (mm), both axes")
    _hist_by_sequence(axes[2], geo, lambda r: [r["slices"]], "sagittal slices")
    counts = Counter(f"{r['orientation']}\nsag={r['sagittal_axis']}" for r in geo)
    axes[3].bar(list(counts), list(counts.values()), color="gray")
    axes[3].set_xlabel("orientation, sagittal ITK axis", fontsize=7)
    for ax in axes:
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("files", fontsize=7)
    axes[0].legend(fontsize=6)
    _save(fig, path, dpi)


def _hist_by_sequence(ax, records: list[dict], values, xlabel: str) -> None:
    seqs = sorted({r["sequence"] or "unknown" for r in records}, key=_seq_order)
    data = [[v for r in records if (r["sequence"] or "unknown") == s for v in values(r)] for s in seqs]
    ax.hist(data, bins=20, stacked=True, label=seqs, color=[SEQ_COLORS.get(s, "gray") for s in seqs])
    ax.set_xlabel(xlabel, fontsize=7)


def plot_intensity(records: list[dict], path: Path, dpi: int) -> None:
    """Per-file intensity range: line from min to max, bar from 1st to 99th percentile."""
    import matplotlib.pyplot as plt

    rows = [r for r in records if "intensity" in r]
    fig, ax = plt.subplots(figsize=(7, 2.4))
    for x, r in enumerate(rows):
        i, color = r["intensity"], SEQ_COLORS.get(r["sequence"], "gray")
        ax.vlines(x, i["min"], i["max"], color=color, lw=0.8)
        ax.vlines(x, i["p1"], i["p99"], color=color, lw=4)
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=90, fontsize=5)
    ax.set_ylabel("intensity", fontsize=7)
    ax.set_title("min-max (line) and 1st-99th percentile (bar) per image", fontsize=7)
    ax.tick_params(labelsize=6)
    _save(fig, path, dpi)


def plot_labels(records: list[dict], path: Path, dpi: int) -> None:
    """Vertebrae and discs per file, numbering conventions, volumes of single structures."""
    import matplotlib.pyplot as plt

    labels = [r["labels"] for r in records if "labels" in r]
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.6))
    top = max([lb[k] for lb in labels for k in ("vertebrae", "partial_vertebrae", "discs")] + [1])
    bins = np.arange(-0.5, top + 1.5)
    axes[0].hist([[lb[k] for lb in labels] for k in ("vertebrae", "partial_vertebrae", "discs")], bins=bins, label=["vertebrae", "partial vertebrae", "discs"])
    axes[0].set_xlabel("structures per file", fontsize=7)
    axes[0].set_ylabel("files", fontsize=7)
    axes[0].legend(fontsize=6)
    conventions = Counter(lb["convention"] for lb in labels)
    axes[1].bar(list(conventions), list(conventions.values()), color="gray")
    axes[1].set_xlabel("vertebra numbering", fontsize=7)
    present = [(s, v) for s in STRUCTURES if (v := structure_volumes(labels, s))]
    if present:
        axes[2].boxplot([v for _, v in present], flierprops={"markersize": 2})
        axes[2].set_xticks(range(1, len(present) + 1), [s.replace(" ", "\n") for s, _ in present])
    axes[2].set_ylabel("volume of one structure (ml)", fontsize=7)
    for ax in axes:
        ax.tick_params(labelsize=6)
    _save(fig, path, dpi)


def _save(fig, path: Path, dpi: int) -> None:
    """Save a figure as a 256-colour PNG (a third of the size of a full-colour one)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    with Image.open(path) as png:
        palette = png.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    palette.save(path, optimize=True)


# ----------------------------------------------------------------------------- report


def pick_examples(records: list[dict], per_sequence: int) -> list[dict]:
    """The first ``per_sequence`` unflagged files of each sequence."""
    chosen = []
    for seq in sorted({r["sequence"] for r in records if r["sequence"]}, key=_seq_order):
        chosen += [r for r in records if r["sequence"] == seq and "size" in r and not r["flags"]][:per_sequence]
    return chosen


def make_figures(records: list[dict], files: dict, out_dir: Path, examples_3d: list[str], per_sequence: int, dpi: int) -> dict[str, str]:
    """Draw every figure the data allows; return {figure name: file name}. Examples are drawn
    only from files without flags (so both their image and mask are readable); the three-plane
    figure shows the files named in ``examples_3d``, or the first example of each sequence."""
    import matplotlib

    matplotlib.use("Agg")
    figures = {}
    plots = {"geometry": ("size", plot_geometry), "intensity": ("intensity", plot_intensity), "labels": ("labels", plot_labels)}
    for name, (key, plot) in plots.items():
        if any(key in r for r in records):
            plot(records, out_dir / f"{name}.png", dpi)
            figures[name] = f"{name}.png"
    examples = pick_examples(records, per_sequence)
    if examples:
        plot_examples([(r, files[r["name"]]["image"], files[r["name"]]["mask"]) for r in examples], out_dir / "examples.png", dpi)
        figures["examples"] = "examples.png"
    clean = {r["name"]: r for r in records if "size" in r and not r["flags"]}
    unknown = [name for name in examples_3d if name not in clean]
    if unknown:
        raise InputError(f"--example {unknown[0]}: no readable, unflagged file of that name")
    firsts = list({r["sequence"]: r["name"] for r in examples[::-1]}.values())[::-1]
    for name in examples_3d or firsts:
        paths, key = files[name], f"three_axes_{name}"
        plot_three_axes(clean[name], paths["image"], paths["mask"], out_dir / f"{key}.png", dpi)
        figures[key] = f"{key}.png"
    return figures


def _fmt(rng: dict | None, digits: int = 2) -> str:
    if rng is None:
        return "-"
    lo, med, hi = (f"{rng[k]:.{digits}f}" for k in ("min", "median", "max"))
    return lo if lo == hi else f"{lo} - {hi} (median {med})"


def _counts(counter: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "-"


def render_report(summary: dict, records: list[dict], figures: dict[str, str], command: str) -> str:
    """The Markdown report."""
    seqs = summary["per_sequence"]
    lines = [
        "# Dataset inspection",
        "",
        f"Generated by `{command}`. Layout: {summary['layout']}. Files: {summary['files']} "
        f"({_counts(summary['sequences'])}); subsets: {_counts(summary['subsets'])}; "
        f"flagged: {summary['flagged']}.",
        "",
        "Geometry is given in ITK order (x, y, z) for sizes and spacings; *slice spacing* is the "
        "spacing along the sagittal axis and *in-plane* the two others, found from the direction "
        "cosines (`algorithm.geometry.orientation`). Orientation codes name the direction each ITK axis "
        "points to (L/R, P/A, S/I).",
        "",
        "## Counts",
        "",
        "| sequence / subset | files |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(summary["sequence_by_subset"].items())],
        "",
        "## Per sequence",
        "",
        "| | " + " | ".join(seqs) + " |",
        "|---|" + "---|" * len(seqs),
    ]
    rows = [
        ("files", lambda s: str(s["files"])),
        ("sagittal slices", lambda s: _fmt(s["slices"], 0)),
        ("slice spacing (mm)", lambda s: _fmt(s["slice_spacing_mm"])),
        ("in-plane spacing (mm)", lambda s: _fmt(s["inplane_spacing_mm"])),
        ("in-plane size (voxels)", lambda s: _fmt(s["inplane_size"], 0)),
        ("orientations", lambda s: _counts(s["orientations"])),
        ("image dtypes", lambda s: _counts(s["dtypes"])),
        ("image minimum", lambda s: _fmt(s["intensity_min"], 0)),
        ("image maximum", lambda s: _fmt(s["intensity_max"], 0)),
        ("vertebrae (1-25) per file", lambda s: _fmt(s["vertebrae_per_case"], 0)),
        ("partial vertebrae (101-125) per file", lambda s: _fmt(s["partial_vertebrae_per_case"], 0)),
        ("files with partial vertebrae", lambda s: str(s["files_with_partial_vertebrae"])),
        ("discs per file", lambda s: _fmt(s["discs_per_case"], 0)),
        ("files with spinal canal", lambda s: str(s["files_with_canal"])),
        ("numbering convention", lambda s: _counts(s["conventions"])),
        *[(f"volume of one {k} (ml)", lambda s, k=k: _fmt(s["structure_volume_ml"][k], 1)) for k in STRUCTURES],
    ]
    lines += [f"| {name} | " + " | ".join(get(s) for s in seqs.values()) + " |" for name, get in rows]
    lines += ["", "## Problems", ""]
    flagged = [r for r in records if r["flags"]]
    lines += [f"- `{r['name']}`: " + "; ".join(r["flags"]) for r in flagged] or ["None found."]
    captions = {
        "geometry": "Slice spacing, in-plane spacing, number of sagittal slices and orientation per file.",
        "intensity": "Intensity range of every image. Values have no absolute unit; ranges differ between files.",
        "labels": "Vertebrae, partially visible vertebrae and discs per file; numbering convention; volume of each single structure.",
        "examples": "Mid-sagittal slice (largest spinal canal area) with the mask: vertebrae yellow, discs blue, canal red; numbers are the vertebrae's label values.",
        "three_axes": "One volume in its three planes, drawn in mm so that the aspect is true; lines mark the coronal (cyan), axial (magenta) and sagittal (green) cuts.",
    }
    lines += ["", "## Figures", ""]
    for key, file in figures.items():
        caption = captions["three_axes"] if key.startswith("three_axes") else captions[key]
        lines += [f"![{key}]({file})", "", caption, ""]
    lines += ["## Files", "", "| file | subset | size (x, y, z) | spacing (mm) | orientation | sagittal | vertebrae | partial | discs | numbering |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lb = r.get("labels", {})
        size = " x ".join(map(str, r["size"])) if "size" in r else "-"
        spacing = " x ".join(f"{s:.3g}" for s in r["spacing"]) if "size" in r else "-"
        lines.append(
            f"| {r['name']} | {r['subset'] or '-'} | {size} | {spacing} | {r.get('orientation', '-')} | "
            f"{r.get('sagittal_axis', '-')} | {lb.get('vertebrae', '-')} | {lb.get('partial_vertebrae', '-')} | "
            f"{lb.get('discs', '-')} | {lb.get('convention', '-')} |"
        )
    return "\n".join(lines) + "\n"


def inspect_dataset(data_dir: str | Path, out_dir: str | Path, examples_3d: list[str] | None = None, per_sequence: int = 3, dpi: int = 90) -> dict:
    """Inspect ``data_dir`` and write report.md, summary.json and figures to ``out_dir``."""
    from tqdm import tqdm

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: no such folder")
    layout, files = find_files(data_dir)
    if not files:
        raise InputError(f"{data_dir}: no volume files found (expected images/ and masks/, or mask files)")
    missing = [name for name in examples_3d or [] if name not in files]
    if missing:
        raise InputError(f"--example {missing[0]}: no such file in {data_dir}")
    subsets = read_subsets(data_dir / "overview.csv")
    records = [
        inspect_file(name, paths["image"], paths["mask"], subsets.get(name), layout)
        for name, paths in tqdm(files.items(), desc="inspecting", unit="file")
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = make_figures(records, files, out_dir, examples_3d or [], per_sequence, dpi)
    summary = {"data_dir": str(data_dir), "layout": layout, **summarize(records), "figures": figures, "cases": records}
    command = " ".join([f"spider-inspect {data_dir} --out {out_dir}", *(f"--example {n}" for n in examples_3d or [])])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "report.md").write_text(render_report(summary, records, figures, command))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spider-inspect", description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="SPIDER-layout folder (images/, masks/, overview.csv) or a folder of masks")
    parser.add_argument("--out", default="dataset-report", help="output folder for report.md, summary.json and figures")
    parser.add_argument("--example", action="append", help="file stem to draw in three planes (repeatable; default: first file of each sequence)")
    parser.add_argument("--per-sequence", type=int, default=3, help="example slices per sequence")
    parser.add_argument("--dpi", type=int, default=90, help="resolution of the PNG figures")
    args = parser.parse_args(argv)
    try:
        summary = inspect_dataset(args.data_dir, args.out, args.example, args.per_sequence, args.dpi)
    except InputError as err:
        print(f"spider-inspect: error: {err}", file=sys.stderr)
        return 2
    print(f"{summary['files']} files, {summary['flagged']} flagged; report: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
