"""Where a model's class Dice is lost on the real spider-slices: per class, its missed (FN) and
extra (FP) pixels within 2 pixels of the reference's border or farther, as shares of the
reference; the predicted labels that touch no reference pixel of their class; and the bound the
model's in-plane working grid sets (the reference's classes resampled to it and back as the
pipeline resamples).

    PYTHONPATH=$PWD python scripts/real_slice_errors.py [MODEL] [--set "t2 slices, with canal"]

MODEL: a model folder or a folder of routed ones (default: the bundled models). Partially visible
reference vertebrae are left out of both masks (train.score.without_partial).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NEAR_PX = 2


def breakdown(reference: np.ndarray, prediction: np.ndarray, cls: int) -> np.ndarray:
    """[reference px, FN near, FN far, FP near, FP far] of class ``cls`` (class maps; distances per slice)."""
    from scipy import ndimage

    ref, pred = reference == cls, prediction == cls
    border = ref ^ ndimage.binary_erosion(ref, structure=np.ones((1, 3, 3), bool))
    if border.any():
        near = ndimage.distance_transform_edt(~border, sampling=(1e6, 1, 1)) <= NEAR_PX  # no reach across slices
    else:
        near = np.zeros(ref.shape, bool)
    fn, fp = ref & ~pred, pred & ~ref
    return np.array([ref.sum(), (fn & near).sum(), (fn & ~near).sum(), (fp & near).sum(), (fp & ~near).sum()], float)


def unmatched_px(reference: np.ndarray, labels: np.ndarray, cls: int) -> tuple[int, int]:
    """(count, pixels) of the predicted labels of class ``cls`` that overlap no reference pixel of it."""
    from algorithm.labels import to_classes

    inside = labels[to_classes(labels) == cls]
    values, sizes = np.unique(inside, return_counts=True)
    lost = [size for value, size in zip(values, sizes) if not (reference[labels == value] == cls).any()]
    return len(lost), int(sum(lost))


def grid_bound(reference: np.ndarray, spacing: tuple[float, float, float], config) -> np.ndarray:
    """The reference class map after its one-hot classes go to the model's in-plane grid and back,
    by the pipeline's own grid and resampling (``model_shape``, linear ``resample_inplane``), argmax."""
    from algorithm.preprocess import model_shape, resample_inplane

    onehot = np.stack([reference == cls for cls in range(4)]).astype(np.float32)
    small = resample_inplane(onehot, model_shape(reference.shape[1:], spacing[1:], config), order=1)
    return resample_inplane(small, reference.shape[1:], order=1).argmax(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?")
    parser.add_argument("--set", dest="sets", action="append", help="train.score set names (default: the T2 slices with canal)")
    args = parser.parse_args()
    from algorithm.labels import CLASS_NAMES, to_classes
    from algorithm.pipeline import Models, segment_volume
    from train.score import CLASS_LABELS, DEFAULT_DATA, score_case, summarize, validation_sets, without_partial

    segmenter = Models(args.model, "onnxruntime")
    sets = validation_sets(DEFAULT_DATA)
    for name in args.sets or ["t2 slices, with canal"]:
        if name not in sets:
            print(f"{name}: not here (../shared/data)")
            continue
        classes = [c for c, key in enumerate(CLASS_NAMES) if key in sets[name][0].classes]
        totals = {c: np.zeros(5) for c in classes}
        lost = {c: np.zeros(2) for c in classes}
        bounds = []  # score_case of the reference sent through the working grid, per case
        for item in sets[name]:
            volume, reference, spacing = item.load()
            reference, labels = without_partial(reference.astype(np.int32), segment_volume(volume, spacing, segmenter).astype(np.int32))
            ref, pred = to_classes(reference), to_classes(labels)
            bounds.append(score_case(reference, CLASS_LABELS[grid_bound(ref, spacing, segmenter.config_for(spacing[0]))], item.classes))
            for c in classes:
                totals[c] += breakdown(ref, pred, c)
                lost[c] += unmatched_px(ref, labels, c)
        bound = summarize(bounds)
        for c in classes:
            size, fn_near, fn_far, fp_near, fp_far = totals[c]
            print(f"{name}, {CLASS_NAMES[c]}: FN near {fn_near / size:.3f} far {fn_far / size:.3f}, FP near {fp_near / size:.3f} "
                  f"far {fp_far / size:.3f} (of the reference); {lost[c][0]:.0f} labels on no reference {CLASS_NAMES[c]} "
                  f"({lost[c][1] / size:.3f}); working-grid bound on Dice {bound[CLASS_NAMES[c]]:.3f}", flush=True)


if __name__ == "__main__":
    main()
