"""The SPIDER label scheme and the model's semantic classes.

SPIDER values: 0 background, 1-25 vertebrae, 101-125 partially visible vertebrae, 100 spinal
canal, 201-225 intervertebral discs. Files number vertebrae bottom-up (1 = lowest, disc 201
below it) or top-down (24 = lowest, disc 224 below it); the class mapping is the same for both.
"""

from __future__ import annotations

import numpy as np

BACKGROUND, VERTEBRA, DISC, CANAL = 0, 1, 2, 3
CLASS_NAMES = ("background", "vertebra", "disc", "canal")
CANAL_LABEL = 100
DISC_OFFSET = 200
PARTIAL_OFFSET = 100
MAX_INDEX = 25


def is_vertebra(values: np.ndarray) -> np.ndarray:
    """True for full (1-25) and partially visible (101-125) vertebra values."""
    values = np.asarray(values)
    return ((values >= 1) & (values <= MAX_INDEX)) | (
        (values > PARTIAL_OFFSET) & (values <= PARTIAL_OFFSET + MAX_INDEX)
    )


def is_disc(values: np.ndarray) -> np.ndarray:
    """True for intervertebral disc values (201-225)."""
    values = np.asarray(values)
    return (values > DISC_OFFSET) & (values <= DISC_OFFSET + MAX_INDEX)


def is_valid_label(values: np.ndarray) -> np.ndarray:
    """True where a value belongs to the SPIDER scheme."""
    values = np.asarray(values)
    return (values == 0) | (values == CANAL_LABEL) | is_vertebra(values) | is_disc(values)


def to_classes(mask: np.ndarray) -> np.ndarray:
    """Map a SPIDER instance mask (either numbering convention) to uint8 classes."""
    mask = np.asarray(mask)
    values = np.unique(mask)
    lut_keys = values.astype(np.int64)
    lut_vals = np.zeros(len(values), dtype=np.uint8)
    lut_vals[is_vertebra(values)] = VERTEBRA
    lut_vals[is_disc(values)] = DISC
    lut_vals[values == CANAL_LABEL] = CANAL
    return lut_vals[np.searchsorted(lut_keys, mask)]


def numbering_convention(mask: np.ndarray) -> str:
    """'bottom-up' (1 = lowest vertebra), 'top-down' (highest value = lowest) or 'none'.

    Decided from the position of each vertebra's disc: in bottom-up files disc 200+k lies below
    vertebra k, so vertebra k+1 is above it. The mask's first axis must run superior to inferior
    (the canonical orientation, see geometry.py).
    """
    mask = np.asarray(mask)
    vert = [v for v in np.unique(mask) if 1 <= v <= MAX_INDEX]
    if len(vert) < 2:
        return "none"
    rows = np.arange(mask.shape[1])
    centres = []
    for v in vert:
        profile = (mask == v).sum(axis=(0, 2))
        centres.append(float((profile * rows).sum() / profile.sum()))
    # canonical axis 1 runs superior -> inferior: bottom-up numbering puts higher values higher up.
    slope = np.polyfit(np.asarray(vert, float), np.asarray(centres), 1)[0]
    return "bottom-up" if slope < 0 else "top-down"
