"""How models hold up under added noise: pooled class Dice of the first synthetic T1/T2 volumes of
train.score with Gaussian noise added at several levels (a share of each volume's 99th percentile).

    PYTHONPATH=$PWD python scripts/noise_robustness.py MODEL [MODEL ...] [--volumes 6] [--levels 0,0.05,0.1]

The same noise (seeded per volume) reaches every model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def pooled_dice(segmenter, items: list, level: float) -> list[float]:
    """Pooled class Dice (vertebra, disc, canal) of ``segmenter`` over ``items`` with noise ``level``."""
    from algorithm.labels import to_classes
    from algorithm.pipeline import segment_volume

    inter, size = np.zeros(3), np.zeros(3)
    for seed, item in enumerate(items):
        volume, reference, spacing = item.load()
        if level:
            noise = np.random.default_rng(seed).normal(0.0, level * np.percentile(volume, 99), volume.shape)
            volume = (volume + noise).astype(volume.dtype)
        ref = to_classes(reference.astype(np.int32))
        pred = to_classes(segment_volume(volume, spacing, segmenter).astype(np.int32))
        for c in (1, 2, 3):
            inter[c - 1] += ((ref == c) & (pred == c)).sum()
            size[c - 1] += (ref == c).sum() + (pred == c).sum()
    return list(2 * inter / np.maximum(size, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--volumes", type=int, default=6, help="first N volumes of each synthetic set (default 6)")
    parser.add_argument("--levels", default="0,0.05,0.1", help="noise standard deviations, as shares of the 99th percentile")
    args = parser.parse_args()
    from algorithm.pipeline import Models
    from train.score import synthetic_sets

    levels = [float(v) for v in args.levels.split(",")]
    sets = {name: items[: args.volumes] for name, items in synthetic_sets().items()}
    for model in args.models:
        segmenter = Models(model, "torch")
        for name, items in sets.items():
            for level in levels:
                dice = pooled_dice(segmenter, items, level)
                print(f"{model} {name}, {len(items)} volumes, noise {level:.2f}: vertebra / disc / canal " + " / ".join(f"{d:.3f}" for d in dice), flush=True)


if __name__ == "__main__":
    main()
