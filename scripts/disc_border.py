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
    """(offsets, 3) pooled class Dice vertebra / disc / canal of ``segmenter`` over ``items``, scored
    by train.score (partially visible reference vertebrae ignored)."""
    from algorithm.labels import DISC
    from algorithm.pipeline import host_logits
    from algorithm.preprocess import preprocess, resample_inplane
    from train.score import CLASS_LABELS, KEYS, score_case, summarize

    per_offset: list[list[dict]] = [[] for _ in offsets]
    for item in items:
        volume, reference, spacing = item.load()
        model = segmenter.for_spacing(spacing[0]).result()
        predictions = np.zeros((len(offsets), *volume.shape), dtype=np.uint8)
        for idx, logits, crop in host_logits(preprocess(volume, spacing, model.config), spacing[0], model):
            logits = resample_inplane(logits[..., : crop[0], : crop[1]].astype(np.float32), tuple(volume.shape[1:]), order=1)
            for k, offset in enumerate(offsets):
                logits[:, DISC] += offset - (offsets[k - 1] if k else 0)
                predictions[k, idx.start : idx.stop] = logits.argmax(1)
        for k, prediction in enumerate(predictions):
            per_offset[k].append(score_case(reference.astype(np.int32), CLASS_LABELS[prediction], KEYS))
    return np.array([[summarize(cases)[key] for key in KEYS] for cases in per_offset])


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
