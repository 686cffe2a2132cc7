"""How models hold up under added noise: train.score's pooled class Dice and levels found on the
first synthetic T1/T2 volumes with Gaussian noise added at several levels (a share of each volume's 99th percentile).

    PYTHONPATH=$PWD python scripts/noise_robustness.py MODEL [MODEL ...] [--volumes 6] [--levels 0,0.05,0.1]

The same noise (seeded per volume) reaches every model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def noisy_scores(segmenter, items: list, level: float) -> dict[str, float]:
    """train.score's figures (``summarize`` of ``score_case``) of ``segmenter`` over ``items``
    with noise ``level`` added."""
    from algorithm.pipeline import segment_volume
    from train.score import score_case, summarize

    per_case = []
    for seed, item in enumerate(items):
        volume, reference, spacing = item.load()
        if level:
            noise = np.random.default_rng(seed).normal(0.0, level * np.percentile(volume, 99), volume.shape)
            volume = (volume + noise).astype(volume.dtype)
        prediction = segment_volume(volume, spacing, segmenter).astype(np.int32)
        per_case.append(score_case(reference.astype(np.int32), prediction, item.classes, item.catch_all))
    return summarize(per_case)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--volumes", type=int, default=6, help="first N volumes of each synthetic set (default 6)")
    parser.add_argument("--levels", default="0,0.05,0.1", help="noise standard deviations, as shares of the 99th percentile")
    args = parser.parse_args()
    from algorithm.pipeline import Models
    from train.score import KEYS, synthetic_sets

    levels = [float(v) for v in args.levels.split(",")]
    sets = {name: items[: args.volumes] for name, items in synthetic_sets().items()}
    for model in args.models:
        segmenter = Models(model, "torch")
        for name, items in sets.items():
            for level in levels:
                scores = noisy_scores(segmenter, items, level)
                print(f"{model} {name}, {len(items)} volumes, noise {level:.2f}: vertebra / disc / canal "
                      + " / ".join(f"{scores[key]:.3f}" for key in KEYS) + f", levels found {scores['levels_found']:.3f}", flush=True)


if __name__ == "__main__":
    main()
