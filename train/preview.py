"""A picture of what training sees: augmented samples of each kind (real, remapped, synthetic,
thick-slice, mask-only), next to real T1 and T2 slices for comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from algorithm.config import Config

ROWS = {  # row title -> augmentation overrides that force one kind of sample
    "real": {"p_synth": 0.0, "p_remap": 0.0, "p_thick": 0.0, "p_mask_only": 0.0},
    "remapped": {"p_synth": 0.0, "p_remap": 1.0, "p_thick": 0.0, "p_mask_only": 0.0},
    "synthetic": {"p_synth": 1.0, "p_remap": 0.0, "p_thick": 0.0, "p_mask_only": 0.0},
    "thick slices": {"p_synth": 0.0, "p_remap": 0.0, "p_thick": 1.0, "p_mask_only": 0.0},
    "mask-only, synthetic": {"p_mask_only": 1.0},
}


def reference_slices(folder: Path, config: Config, count: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``count`` real central slices per contrast from spider-slices/t1t2-vertebrae,
    preprocessed as inference does."""
    from algorithm.preprocess import preprocess
    from train.score import central_slices

    out = []
    for contrast in ("T1", "T2"):
        for it in central_slices(folder, contrast)[:count]:
            volume, _, spacing = it.load()
            out.append((f"real {contrast}", preprocess(volume, spacing, config)[0]))
    return out


def show_augmentations(volumes: list, config: Config, path: Path, cols: int = 6, reference: Path | None = None) -> Path:
    """A PNG grid: one row per kind of training sample (centre channel, classes overlaid), and
    a last row of real T1/T2 slices from ``reference`` (spider-slices/t1t2-vertebrae) if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from train import augment
    from train.train import sample_batch

    rows = {k: v for k, v in ROWS.items() if k != "mask-only, synthetic" or any(vol.image is None for vol in volumes)}
    real = reference_slices(reference, config, cols // 2) if reference and reference.is_dir() else []
    fig, axes = plt.subplots(len(rows) + bool(real), cols, figsize=(2.2 * cols, 2.3 * (len(rows) + bool(real))), squeeze=False)
    batch_config = type(config)(**{**config.__dict__, "batch_size": cols})
    for r, (title, overrides) in enumerate(rows.items()):
        gen = torch.Generator().manual_seed(config.seed + r)
        x, y = sample_batch(volumes, batch_config, {**augment.params(config.augment), **overrides}, gen, "cpu")
        for ax, img, cls in zip(axes[r], x[:, config.context].numpy(), y.numpy()):
            ax.imshow(img, cmap="gray")
            ax.imshow(np.ma.masked_equal(cls, 0), cmap="tab10", vmin=0, vmax=9, alpha=0.3, interpolation="nearest")
        axes[r, 0].set_title(title, loc="left", fontsize=9)
    for ax, (title, img) in zip(axes[-1] if real else [], real):
        ax.imshow(img, cmap="gray")
        ax.set_title(title, loc="left", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("training samples by kind (centre channel, classes overlaid); last row: real slices, not trained on")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
