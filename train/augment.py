"""On-the-fly augmentation in torch, on the training device (GPU when there is one).

Spatial transforms move image and mask together (one sampling grid; bilinear for the image,
nearest for the mask); intensity transforms touch the image only. Each transform fires with its
own probability, listed in DEFAULTS and overridable through ``Config.augment``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULTS: dict[str, float] = {
    "p_rotate": 0.5, "rotate_deg": 15.0,  # in-plane rotation
    "p_scale": 0.5, "scale_min": 0.8, "scale_max": 1.25, "anisotropy": 0.15,  # zoom, per axis jitter
    "p_elastic": 0.3, "elastic_px": 6.0,  # smooth random displacement, pixels
    "p_mirror": 0.5,  # left-right mirror = reversed slice order of the 2.5D context
    "p_brightness": 0.3, "brightness": 0.25,  # multiplicative
    "p_contrast": 0.3, "contrast": 0.3,
    "p_gamma": 0.3, "gamma_min": 0.7, "gamma_max": 1.5,
    "p_noise": 0.2, "noise_std": 0.1,
    "p_blur": 0.2, "blur_sigma_max": 1.0,
    "p_bias": 0.3, "bias_strength": 0.4,  # smooth multiplicative bias field
    "p_lowres": 0.2, "lowres_max": 2.5,  # simulated thick slices / low in-plane resolution
    # contrast and acquisition randomisation (train/synth.py); 0 = today's recipe
    "p_synth": 0.0,  # image drawn from the tissue map, random intensity per tissue
    "p_remap": 0.0,  # real image, each tissue remapped by its own random curve
    "p_thick": 0.0, "thick_min": 3.3, "thick_max": 4.8,  # thin slices averaged into thick ones, mm
    "p_thick_typical": 0.0, "thick_typical_max": 4.8,  # share of slabs drawn from thick_min..thick_typical_max only
    "p_nocontext": 0.0,  # context channels replaced by the centre slice (one-slice volumes)
    "p_mask_only": 0.0,  # share of samples drawn from mask-only volumes (spider-train --masks)
}


def params(overrides: dict | None = None) -> dict[str, float]:
    """DEFAULTS updated with a config's overrides (unknown keys are an error)."""
    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown augmentation keys: {sorted(unknown)}")
    return {**DEFAULTS, **(overrides or {})}


def _coin(p: float, n: int, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) < p).to(device)


def _uniform(lo: float, hi: float, n: int, gen: torch.Generator, device) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n, generator=gen)).to(device)


def _gaussian_blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with replicated borders, as weighted sums of shifted
    views (several times faster on the CPU than a depthwise convolution)."""
    radius = max(1, int(round(2 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).tolist()
    h, w = batch.shape[-2:]
    padded = F.pad(batch, (radius, radius, 0, 0), mode="replicate")
    rows = sum(weight * padded[..., i : i + w] for i, weight in enumerate(k))
    padded = F.pad(rows, (0, 0, radius, radius), mode="replicate")
    return sum(weight * padded[..., i : i + h, :] for i, weight in enumerate(k))


def _where(on: torch.Tensor, transform, batch: torch.Tensor) -> torch.Tensor:
    """``transform`` applied to the samples of ``batch`` where ``on`` (B,) is set; the others unchanged.
    ``transform`` takes the selected samples and their indices."""
    index = torch.nonzero(on).flatten()
    if len(index) == 0:
        return batch
    out = batch.clone()
    out[index] = transform(batch[index], index)
    return out


def sampling_grid(in_hw: tuple[int, int], out_hw: tuple[int, int], centres: torch.Tensor, p: dict, gen: torch.Generator, train: bool = True) -> torch.Tensor:
    """grid_sample grids (B, h, w, 2) that cut ``out_hw`` patches centred at ``centres`` (B, 2;
    input pixels, row/column) out of ``in_hw`` slices, each rotated, scaled and elastically
    deformed at random."""
    b, (h, w), dev = centres.shape[0], out_hw, centres.device
    ys = torch.arange(h, device=dev, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=dev, dtype=torch.float32) - (w - 1) / 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    zeros, ones = torch.zeros(b, device=dev), torch.ones(b, device=dev)
    angle, sy, sx = zeros, ones, ones
    if train:
        rad = math.radians(p["rotate_deg"])
        angle = torch.where(_coin(p["p_rotate"], b, gen, dev), _uniform(-rad, rad, b, gen, dev), zeros)
        zoom = torch.exp(_uniform(math.log(p["scale_min"]), math.log(p["scale_max"]), b, gen, dev))
        zoom_on = _coin(p["p_scale"], b, gen, dev)
        sy = torch.where(zoom_on, zoom * (1 + _uniform(-p["anisotropy"], p["anisotropy"], b, gen, dev)), ones)
        sx = torch.where(zoom_on, zoom * (1 + _uniform(-p["anisotropy"], p["anisotropy"], b, gen, dev)), ones)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    # a zoom factor s > 1 shows a smaller field, so input offsets shrink by 1/s
    py = (cos * yy - sin * xx) / sy[:, None, None]
    px = (sin * yy + cos * xx) / sx[:, None, None]
    if train:
        coarse = torch.randn(b, 2, max(2, h // 32), max(2, w // 32), generator=gen).to(dev) * p["elastic_px"]
        field = _where(_coin(p["p_elastic"], b, gen, dev), lambda x, i: F.interpolate(coarse[i], size=(h, w), mode="bicubic", align_corners=True),
                       torch.zeros(b, 2, h, w, device=dev))
        py, px = py + field[:, 0], px + field[:, 1]
    py, px = py + centres[:, 0, None, None], px + centres[:, 1, None, None]
    return torch.stack([2 * px / max(in_hw[1] - 1, 1) - 1, 2 * py / max(in_hw[0] - 1, 1) - 1], dim=-1)


def spatial(images: torch.Tensor, classes: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample slices (B, C, H, W) and class maps (B, H, W) on ``grid``; outside -> background."""
    floor = images.amin(dim=(1, 2, 3), keepdim=True)
    img = F.grid_sample(images - floor, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + floor
    cls = F.grid_sample(classes[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=True)[:, 0]
    return img, cls.long()


def intensity(batch: torch.Tensor, p: dict, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, gamma, noise, blur, bias field and low resolution on (B, C, H, W).
    Every random number is drawn for the whole batch (so a batch does not depend on which samples
    fire); each transform is computed only on the samples it fires on."""
    b, _, h, w = batch.shape
    dev = batch.device
    ones = torch.ones(b, device=dev)
    batch = batch * torch.where(_coin(p["p_brightness"], b, gen, dev), _uniform(1 - p["brightness"], 1 + p["brightness"], b, gen, dev), ones)[:, None, None, None]
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    factor = torch.where(_coin(p["p_contrast"], b, gen, dev), _uniform(1 - p["contrast"], 1 + p["contrast"], b, gen, dev), ones)
    batch = (batch - mean) * factor[:, None, None, None] + mean
    gamma_on = _coin(p["p_gamma"], b, gen, dev)
    if gamma_on.any():
        gamma = _uniform(p["gamma_min"], p["gamma_max"], b, gen, dev)[:, None, None, None]

        def apply_gamma(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            span = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-6)
            return ((x - lo) / span).clamp(0, 1) ** gamma[i] * span + lo

        batch = _where(gamma_on, apply_gamma, batch)
    if p["p_bias"] > 0:
        coarse = torch.randn(b, 1, 4, 4, generator=gen).to(dev) * p["bias_strength"] / 2

        def apply_bias(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            field = torch.exp(F.interpolate(coarse[i], size=(h, w), mode="bicubic", align_corners=True))
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            return (x - lo) * field + lo

        batch = _where(_coin(p["p_bias"], b, gen, dev), apply_bias, batch)
    blur_on = _coin(p["p_blur"], b, gen, dev)
    if blur_on.any():
        sigma = float(_uniform(0.5, p["blur_sigma_max"], 1, gen, "cpu"))
        batch = _where(blur_on, lambda x, i: _gaussian_blur(x, sigma), batch)
    low_on = _coin(p["p_lowres"], b, gen, dev)
    if low_on.any():
        f = float(_uniform(1.2, p["lowres_max"], 1, gen, "cpu"))
        # thick slices blur along the superior-inferior or anterior-posterior axis, or both
        axis = int(torch.randint(0, 3, (1,), generator=gen))
        size = (max(2, int(h / f)) if axis in (0, 2) else h, max(2, int(w / f)) if axis in (1, 2) else w)
        batch = _where(low_on, lambda x, i: F.interpolate(F.interpolate(x, size=size, mode="area"), size=(h, w), mode="bilinear", align_corners=False), batch)
    noise_on = _coin(p["p_noise"], b, gen, dev)
    noise = torch.randn(batch.shape, generator=gen).to(dev) * _uniform(0, p["noise_std"], b, gen, dev)[:, None, None, None]
    return _where(noise_on, lambda x, i: x + noise[i], batch)


def mirror(batch: torch.Tensor, p: dict, gen: torch.Generator) -> torch.Tensor:
    """Left-right mirror: reverse the order of the context channels (the only flip that keeps
    anatomy possible in a sagittal slice)."""
    on = _coin(p["p_mirror"], batch.shape[0], gen, batch.device)[:, None, None, None]
    return torch.where(on, batch.flip(1), batch)
