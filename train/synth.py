"""Contrast- and acquisition-randomised training samples (domain randomisation, SynthSeg style).

Every training volume carries a *tissue map* beside its class map: background pseudo-tissues
(clusters of the real image's background intensities, or random smooth regions where there is no
image), the canal, and vertebra and disc instances. From it a sample's 2.5D channels are made in
one of three ways:

- ``real``: the preprocessed image as it is;
- ``remap``: the real image with each tissue's intensities remapped by a curve of its own
  (random level, slope of either sign, shared gamma), blended at tissue borders, so that real
  texture appears in T1-like, T2-like and any other contrast;
- ``synth``: an image drawn from the tissue map alone, a random intensity per tissue (every
  ordering of canal, disc, vertebra and surroundings occurs; half of the draws follow T1 or T2
  priors), with in-plane partial-volume blur. Mask-only volumes (no image) always take this path.

Each disc is three tissues: a core and two rings along its border (``disc_rings``), drawn anywhere
between the core's intensity and an annulus intensity of their own. A real disc is a nucleus
inside an annulus of another signal, and its label holds both; discs painted as one uniform blob
taught the model that a disc ends where its bright core ends.

Independently, a thin-slice volume is turned into a *thick-slice* acquisition with probability
``p_thick``: slabs of 3.3-4.8 mm are averaged from its 0.9 mm slices, and the 2.5D context is
interpolated between those slabs exactly as inference interpolates between real thick slices.
With probability ``p_nocontext`` the context channels are replaced by the centre slice, as a
one-slice volume presents itself at inference. The probabilities live in ``Config.augment``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from algorithm.config import Config
from algorithm.labels import CANAL_LABEL, DISC_OFFSET, PARTIAL_OFFSET, is_disc, is_vertebra
from algorithm.preprocess import context_positions, context_slices, normalize

BACKGROUND_TISSUES = 4  # pseudo-tissues 0..3
CANAL_TISSUE = 4
VERTEBRA_TISSUE, DISC_TISSUE, INSTANCE_TISSUES = 5, 15, 10
INNER_RING, OUTER_RING = DISC_TISSUE + INSTANCE_TISSUES, DISC_TISSUE + 2 * INSTANCE_TISSUES  # + instance
N_TISSUES = DISC_TISSUE + 3 * INSTANCE_TISSUES
RING_MM = (2.0, 5.0)  # outer ring: disc pixels within 2 mm of the disc's border; inner ring: 2-5 mm
RING_VERTICAL_WEIGHT = 3.0  # superior-inferior distances count 3x: the rings run along the disc's front and back
THIN_SLICE_MM = 2.0  # volumes with slices closer than this can be made thick


def instance_tissues(labels: np.ndarray) -> np.ndarray:
    """SPIDER instance labels -> tissue ids (background 0, canal, vertebra and disc instances)."""
    values = np.unique(labels)
    lut = np.zeros(len(values), dtype=np.uint8)
    vert, disc = is_vertebra(values), is_disc(values)
    lut[vert] = VERTEBRA_TISSUE + (values[vert] % PARTIAL_OFFSET) % INSTANCE_TISSUES
    lut[disc] = DISC_TISSUE + (values[disc] - DISC_OFFSET) % INSTANCE_TISSUES
    lut[values == CANAL_LABEL] = CANAL_TISSUE
    return lut[np.searchsorted(values, labels)]


def background_tissues(image: np.ndarray, tissues: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Split the background (tissue 0) of ``tissues`` into pseudo-tissues 0..3 by 1D k-means of
    the lightly smoothed image's intensities (darkest cluster = 0)."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32), sigma=(0, 1.5, 1.5))
    background = tissues == 0
    values = smooth[background]
    if values.size < BACKGROUND_TISSUES:
        return tissues
    centres = np.quantile(values[:: max(1, values.size // 200_000)], (np.arange(BACKGROUND_TISSUES) + 0.5) / BACKGROUND_TISSUES)
    for _ in range(iterations):
        edges = (centres[1:] + centres[:-1]) / 2
        which = np.searchsorted(edges, values)
        sums = np.bincount(which, weights=values, minlength=BACKGROUND_TISSUES)
        counts = np.bincount(which, minlength=BACKGROUND_TISSUES)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    out = tissues.copy()
    out[background] = np.searchsorted((centres[1:] + centres[:-1]) / 2, values)
    return out


def disc_rings(tissues: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Split every disc of a canonical tissue map (in-plane pixels of ``spacing_mm``) into a core
    and two rings along its border, each its own tissue (``INNER_RING``/``OUTER_RING`` + instance).
    Distances are in-plane, with superior-inferior steps weighted ``RING_VERTICAL_WEIGHT``x."""
    out = tissues.copy()
    disc = (tissues >= DISC_TISSUE) & (tissues < INNER_RING)
    sampling = (RING_VERTICAL_WEIGHT * spacing_mm, spacing_mm)
    for k in np.flatnonzero(disc.any(axis=(1, 2))):
        rows, cols = np.nonzero(disc[k])
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        inside = np.pad(disc[k][box], 1)
        depth = ndimage.distance_transform_edt(inside, sampling=sampling)[1:-1, 1:-1]
        view = out[k][box]
        ring = disc[k][box] & (depth <= RING_MM[1])
        view[ring] += np.where(depth[ring] <= RING_MM[0], OUTER_RING - DISC_TISSUE, INNER_RING - DISC_TISSUE).astype(np.uint8)  # core id -> ring id
    return out


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    cells = int(rng.integers(4, 17))
    coarse = rng.standard_normal((cells, cells))
    return ndimage.zoom(coarse, (shape[0] / cells, shape[1] / cells), order=3, grid_mode=True, mode="nearest")[: shape[0], : shape[1]]


def random_background(tissues: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fill the background of a mask-only slab with random smooth pseudo-tissue regions."""
    field = _smooth_field(tissues.shape[1:], rng)
    edges = np.quantile(field, np.sort(rng.uniform(0.1, 0.9, BACKGROUND_TISSUES - 1)))
    regions = np.searchsorted(edges, field).astype(np.uint8)
    return np.where(tissues == 0, regions[None], tissues)


def tissue_intensities(rng: np.random.Generator) -> np.ndarray:
    """A random intensity in [0, 1] for every tissue id. Half of the draws are free (any ordering
    of the classes), the other half follow T1 priors (canal dark, marrow bright) or T2 priors
    (canal bright); instances of one class vary around their class level. Each disc's outer ring
    lies a random fraction of the way from its core to a random annulus level, its inner ring a
    smaller fraction (0: a uniform disc)."""
    lut = rng.uniform(0, 1, N_TISSUES)
    prior = rng.choice(("free", "t1", "t2"), p=(0.5, 0.25, 0.25))
    ranges = {
        "free": {"canal": (0, 1), "disc": (0, 1), "vertebra": (0, 1)},
        "t1": {"canal": (0.0, 0.3), "disc": (0.15, 0.5), "vertebra": (0.45, 0.9)},
        "t2": {"canal": (0.65, 1.0), "disc": (0.3, 1.0), "vertebra": (0.2, 0.6)},
    }[prior]
    lut[CANAL_TISSUE] = rng.uniform(*ranges["canal"])
    for first, key, spread in ((VERTEBRA_TISSUE, "vertebra", 0.06), (DISC_TISSUE, "disc", 0.15)):
        level = rng.uniform(*ranges[key])
        lut[first : first + INSTANCE_TISSUES] = np.clip(level + rng.normal(0, spread * rng.uniform(0.2, 1), INSTANCE_TISSUES), 0, 1)
    core, annulus, outer = lut[DISC_TISSUE:INNER_RING], rng.uniform(0, 1), rng.uniform(0, 1)
    lut[OUTER_RING:] = core + outer * (annulus - core)
    lut[INNER_RING:OUTER_RING] = core + outer * rng.uniform(0, 1) * (annulus - core)
    return lut.astype(np.float32)


def synthesize(tissues: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """An image from a tissue map: each tissue at its intensity."""
    return lut[tissues]


def remap(image: np.ndarray, tissues: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Real intensities with each tissue moved to a random level and its texture scaled by a
    random slope (negative = inverted), under one random gamma; the per-tissue coefficients are
    blended over 3 pixels at tissue borders. Percentiles and tissue means come from subsamples
    (the means from every second pixel in-plane: remap 1.7x faster, its output on a random
    15 x 400 x 400 stack within 0.005 of full means)."""
    lo, hi = np.percentile(image[:: max(1, image.shape[0] // 4), ::4, ::4], (1, 99))  # a subsample: about 100x faster
    unit = image.astype(np.float32)
    unit -= lo
    unit *= 1 / max(hi - lo, 1e-6)
    np.clip(unit, 0, 1, out=unit)
    unit **= rng.uniform(0.6, 1.6)
    sub_tissues, sub_unit = tissues[:, ::2, ::2].ravel(), unit[:, ::2, ::2].ravel()
    counts = np.bincount(sub_tissues, minlength=N_TISSUES)
    means = (np.bincount(sub_tissues, weights=sub_unit, minlength=N_TISSUES) / np.maximum(counts, 1)).astype(np.float32)
    level = tissue_intensities(rng)
    slope = (rng.uniform(0.3, 1.5, N_TISSUES) * rng.choice((-1, 1), N_TISSUES)).astype(np.float32)
    out = ndimage.uniform_filter(slope[tissues], size=(1, 3, 3))  # the gain
    out *= unit
    out += ndimage.uniform_filter((level - slope * means)[tissues], size=(1, 3, 3))  # the offset
    return out


def _render(vol, first: int, stop: int, mode: str, rng: np.random.Generator, lut: np.ndarray | None) -> np.ndarray:
    """Slices ``first:stop`` of ``vol`` as the sample's mode draws them (float32)."""
    if mode == "real":
        return vol.image[first:stop].astype(np.float32)
    tissues = vol.tissues[first:stop]
    if mode == "remap":
        return remap(vol.image[first:stop], tissues, rng)
    if vol.image is None:
        tissues = random_background(tissues, rng)
    return synthesize(tissues, lut)


def thick_slices(vol, index: int, config: Config, p: dict, mode: str, rng: np.random.Generator, lut: np.ndarray | None) -> np.ndarray:
    """2.5D channels of slice ``index`` of a thin-slice volume acquired as thick slices: slabs of
    a random thickness (3.3-4.8 mm by default; with probability ``p_thick_typical`` at most
    ``thick_typical_max``) at a spacing slightly above it, the context interpolated between slabs
    by the shared ``context_slices``."""
    n, fine = vol.classes.shape[0], vol.slice_spacing
    typical = p["p_thick_typical"] > 0 and rng.random() < p["p_thick_typical"]  # no draw at 0: older configs keep their random sequence
    thickness = rng.uniform(p["thick_min"], p["thick_typical_max"] if typical else p["thick_max"])
    spacing = thickness * rng.uniform(1.0, 1.1)
    reach = int(np.ceil(config.context * config.context_mm / spacing))
    half = thickness / 2 / fine
    steps = [k for k in range(-reach, reach + 1) if 0 <= index + k * spacing / fine <= n - 1]
    bounds = [(max(0, int(np.ceil(c - half))), min(n, int(np.floor(c + half)) + 1)) for c in (index + k * spacing / fine for k in steps)]
    first, stop = bounds[0][0], bounds[-1][1]
    fine_slices = _render(vol, first, stop, mode, rng, lut)
    slabs = np.stack([fine_slices[lo - first : max(hi, lo + 1) - first].mean(axis=0) for lo, hi in bounds])
    centre = steps.index(0)
    return context_slices(slabs, centre, spacing, config)


def sample_channels(vol, index: int, config: Config, p: dict, rng: np.random.Generator) -> np.ndarray:
    """The (C, H, W) float32 input channels of slice ``index`` of a training volume, drawn as
    real, remapped or synthetic, thin or thick, with or without context (see the module doc)."""
    draw = rng.random()
    if vol.image is None or draw < p["p_synth"]:
        mode = "synth"
    elif draw < p["p_synth"] + p["p_remap"]:
        mode = "remap"
    else:
        mode = "real"
    lut = tissue_intensities(rng) if mode == "synth" else None
    if vol.slice_spacing < THIN_SLICE_MM and rng.random() < p["p_thick"]:
        channels = thick_slices(vol, index, config, p, mode, rng, lut)
    else:
        pos = context_positions(vol.classes.shape[0], index, vol.slice_spacing, config)
        first, stop = int(np.floor(pos.min())), min(vol.classes.shape[0], int(np.floor(pos.max())) + 2)
        channels = context_slices(_render(vol, first, stop, mode, rng, lut), index - first, vol.slice_spacing, config)
    if mode == "synth":
        sigma = rng.uniform(0.3, 1.2)
        channels = ndimage.gaussian_filter(channels, sigma=(0, sigma, sigma))
    if rng.random() < p["p_nocontext"]:
        channels = np.repeat(channels[config.context][None], channels.shape[0], axis=0)
    if mode != "real":
        channels = normalize(channels, config)
    return channels.astype(np.float32, copy=False)
