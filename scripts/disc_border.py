"""How far moving the disc border would go: pooled class Dice of the network's class map (no
post-processing) with a constant added to the disc logit before the argmax, on the real T2 slices
with canal, the T2-SPACE validation as thick slabs and train.score's synthetic T1/T2 sets.
A negative offset draws smaller discs, a positive one larger.

    PYTHONPATH=$PWD python scripts/disc_border.py [MODEL] [--offsets -2,-1,-0.5,0,0.5,1]

MODEL: a model folder or a folder of routed ones (default: the bundled models).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def pooled_dice(segmenter, items: list, offsets: list[float]) -> np.ndarray:
    """(offsets, 3) pooled class Dice vertebra / disc / canal of ``segmenter`` over ``items``,
    partially visible reference vertebrae ignored as in train.score."""
    from algorithm.labels import CANAL, DISC, VERTEBRA, to_classes
    from algorithm.pipeline import batches
    from algorithm.preprocess import context_slices, pad_to_multiple, preprocess, resample_inplane

    inter = np.zeros((len(offsets), 3))
    sizes = np.zeros((len(offsets), 3))
    for item in items:
        volume, reference, spacing = item.load()
        model = segmenter.for_spacing(spacing[0])
        model = model.result() if hasattr(model, "result") else model
        ignore = (reference > 100) & (reference < 200)
        ref = to_classes(np.where(ignore, 0, reference).astype(np.int32))
        pp = preprocess(volume, spacing, model.config)
        for idx in batches(volume.shape[0], model.batch_size):
            batch, crop = pad_to_multiple(np.stack([context_slices(pp, i, spacing[0], model.config) for i in idx]), model.config.divisor, float(pp.min()))
            logits = resample_inplane(model.logits(batch)[..., : crop[0], : crop[1]].astype(np.float32), tuple(volume.shape[1:]), order=1)
            r, ig = ref[idx.start : idx.stop], ignore[idx.start : idx.stop]
            for k, offset in enumerate(offsets):
                shifted = logits.copy()
                shifted[:, DISC] += offset
                pred = np.where(ig, 0, shifted.argmax(1))
                for c in (VERTEBRA, DISC, CANAL):
                    inter[k, c - 1] += np.count_nonzero((pred == c) & (r == c))
                    sizes[k, c - 1] += np.count_nonzero(pred == c) + np.count_nonzero(r == c)
    return 2 * inter / np.maximum(sizes, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("--offsets", default="-2,-1.5,-1,-0.5,-0.25,0,0.25,0.5,1", help="disc logit offsets")
    args = parser.parse_args()
    from algorithm.pipeline import Models
    from train.score import DEFAULT_DATA, ThickItem, synthetic_sets, validation_sets

    offsets = [float(v) for v in args.offsets.split(",")]
    real = validation_sets(DEFAULT_DATA)
    sets = {"t2 slices, with canal": real.get("t2 slices, with canal", []),
            "T2-SPACE validation, thick slabs": [ThickItem(it) for it in real.get("T2-SPACE validation", [])], **synthetic_sets()}
    segmenter = Models(args.model, "onnxruntime")
    for name, items in sets.items():
        if not items:
            print(f"{name}: not here (../shared/data)")
            continue
        for offset, dice in zip(offsets, pooled_dice(segmenter, items, offsets)):
            print(f"{name}, disc offset {offset:+.2f}: vertebra / disc / canal " + " / ".join(f"{d:.3f}" for d in dice), flush=True)


if __name__ == "__main__":
    main()
