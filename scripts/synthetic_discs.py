"""Where the synthetic discs go: for each model, what the reference disc pixels of train.score's
synthetic T1/T2 volumes are predicted as, how many false disc pixels there are and how many of
them lie within 2 pixels of a reference disc, and disc recall by distance of the slice from the
centre; optionally the same sets rendered as slab-averaged 2D acquisitions, the same figures on
the real T2 slices with canal and T2-SPACE thick slabs, and a picture.

    PYTHONPATH=$PWD python scripts/synthetic_discs.py MODEL [MODEL ...] [--volumes 8]
        [--slab-averaged] [--annulus 0.20,0.12] [--real] [--picture discs.png]

``--slab-averaged`` renders each volume with 5 thin slices per thick one and averages them
(``train.score.thicken``: the partial-volume profile of a real 2D acquisition) instead of
sampling each thick slice at its centre plane. ``--annulus T1,T2`` renders the annulus at these
relative intensities instead of the generator's (0.27, 0.28: about those of the soft tissue
around the spine, so that only the bright nucleus shows on T2). ``--picture`` draws the central slice of the
second synthetic T2 volume: image, reference and each model's classes. ``--real`` adds the real
sets of ``train.score.selection_sets`` that label discs (read from ``train.score.DEFAULT_DATA``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from scipy import ndimage

SUBSLICES = 5
RIM_PX = 2
CLASS_NAMES = ("background", "vertebra", "disc", "canal")


def load(item, slab_averaged: bool):
    """(volume, reference, spacing) of a train.score SyntheticItem, centre-sampled or slab-averaged."""
    from train.score import ThickItem

    if not slab_averaged:
        return item.load()
    axis = int(np.argmax(item.spacing))  # the slice axis has the largest spacing
    size, spacing = list(item.size), list(item.spacing)
    size[axis] *= SUBSLICES
    spacing[axis] /= SUBSLICES
    fine = dataclasses.replace(item, size=tuple(size), spacing=tuple(spacing))
    return ThickItem(fine, thickness=item.spacing[axis]).load()


def disc_report(model: Path, segmenter, sets: dict[str, list], slab_averaged: bool) -> None:
    """Print, per set, where the reference disc pixels go and disc recall by slice position
    (``segmenter``: ``model``'s ``algorithm.pipeline.Models``; ``slab_averaged`` applies to
    synthetic items only)."""
    from algorithm.labels import to_classes
    from algorithm.pipeline import segment_volume
    from train.score import SyntheticItem

    for name, items in sets.items():
        confusion = np.zeros((4, 4), np.int64)
        false_near = 0  # false disc pixels within RIM_PX in-plane pixels of a reference disc
        slices = []  # (distance from the centre as a share of the slice count, recall)
        for item in items:
            volume, reference, spacing = load(item, slab_averaged) if isinstance(item, SyntheticItem) else item.load()
            ref = to_classes(reference.astype(np.int32))
            pred = to_classes(segment_volume(volume, spacing, segmenter).astype(np.int32))
            confusion += np.bincount((ref * 4 + pred).ravel(), minlength=16).reshape(4, 4)
            rim = ndimage.binary_dilation(ref == 2, structure=np.ones((1, 3, 3), bool), iterations=RIM_PX)
            false_near += int(((pred == 2) & (ref != 2) & rim).sum())
            n = ref.shape[0]
            for i in range(n):
                disc = ref[i] == 2
                if disc.any():
                    slices.append((abs(i - (n - 1) / 2) / n, (disc & (pred[i] == 2)).sum() / disc.sum()))
        row = confusion[2] / confusion[2].sum()
        false_disc = confusion[:, 2].sum() - confusion[2, 2]
        dice = [2 * confusion[c, c] / (confusion[c].sum() + confusion[:, c].sum()) for c in (1, 2, 3)]
        print(f"{model} {name}, {len(items)} cases{', synthetic ones slab-averaged' if slab_averaged else ''}: pooled Dice " + " / ".join(f"{d:.3f}" for d in dice)
              + "; reference disc pixels predicted as "
              + ", ".join(f"{c} {v:.3f}" for c, v in zip(CLASS_NAMES, row))
              + f"; predicted disc pixels {confusion[:, 2].sum() / confusion[2].sum():.3f}x the reference's"
              + f"; reference disc / vertebra pixels {confusion[2].sum() / confusion[1].sum():.3f}"
              + f"; false disc pixels {false_disc / confusion[2].sum():.3f}x the reference's, {false_near / max(false_disc, 1):.2f} of them within {RIM_PX} px of a reference disc")
        position = np.array(slices)
        for lo, hi in ((0.0, 0.15), (0.15, 0.3), (0.3, 0.6)):
            inside = (position[:, 0] >= lo) & (position[:, 0] < hi)
            if inside.any():
                print(f"    slices {lo:.2f}-{hi:.2f} of the slice count off centre ({inside.sum()}): disc recall {position[inside, 1].mean():.3f}")


def picture(segmenters: dict, out: Path) -> None:
    """The central slice of the second synthetic T2 volume: image, reference, each model
    (``segmenters``: model folder -> its ``algorithm.pipeline.Models``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from algorithm.labels import to_classes
    from algorithm.pipeline import segment_volume
    from train.score import synthetic_sets

    item = synthetic_sets()["synthetic T2 (24)"][1]
    volume, reference, spacing = item.load()
    centre = volume.shape[0] // 2
    panels = [("image", volume[centre], "gray"), ("reference", to_classes(reference[centre].astype(np.int32)), "tab10")]
    for model, segmenter in segmenters.items():
        prediction = segment_volume(volume, spacing, segmenter)
        panels.append((str(model), to_classes(prediction[centre].astype(np.int32)), "tab10"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
    for ax, (title, array, cmap) in zip(axes, panels):
        ax.imshow(array, cmap=cmap, **({} if cmap == "gray" else {"vmin": 0, "vmax": 9, "interpolation": "nearest"}))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"synthetic T2 {item.name}, central slice: vertebra orange, disc green, canal red")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--volumes", type=int, default=8, help="first N volumes of each synthetic set (default 8)")
    parser.add_argument("--slab-averaged", action="store_true")
    parser.add_argument("--annulus", help="T1,T2 relative intensities of the annulus (default: the generator's)")
    parser.add_argument("--real", action="store_true", help="also the real T2 slices with canal and T2-SPACE thick slabs (all cases)")
    parser.add_argument("--picture", type=Path)
    args = parser.parse_args()
    if args.annulus:
        from spider_tools import synthetic

        synthetic.TISSUES["annulus"] = tuple(float(v) for v in args.annulus.split(","))
    from algorithm.pipeline import Models
    from train.score import DEFAULT_DATA, selection_sets, synthetic_sets

    sets = {name: items[: args.volumes] for name, items in synthetic_sets().items()}
    if args.real:
        real = selection_sets(DEFAULT_DATA)
        sets.update({name: real[name] for name in ("t2 slices, with canal", "T2-SPACE validation, thick slabs") if name in real})
    segmenters = {model: Models(model, "torch") for model in args.models}  # each model loads once
    for model, segmenter in segmenters.items():
        disc_report(model, segmenter, sets, args.slab_averaged)
    if args.picture:
        picture(segmenters, args.picture)


if __name__ == "__main__":
    main()
