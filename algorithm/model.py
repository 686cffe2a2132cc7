"""The 2D U-Net (nnU-Net style: conv-norm-LeakyReLU blocks, strided-conv downsampling,
transposed-conv upsampling). Defined once; training, export and the PyTorch backend import it."""

from __future__ import annotations

import torch
from torch import nn

from pathlib import Path

from algorithm.config import Config


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and LeakyReLU."""

    def __init__(self, cin: int, cout: int, norm: str, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            _norm(norm, cout),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            _norm(norm, cout),
            nn.LeakyReLU(0.01, inplace=True),
        )


class UNet2D(nn.Module):
    """U-Net with ``len(widths)`` resolution levels; input (N, C, H, W) with H, W divisible by
    ``2 ** (len(widths) - 1)``; output logits (N, num_classes, H, W)."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...], norm: str = "instance"):
        super().__init__()
        self.encoders = nn.ModuleList()
        cin = in_channels
        for level, width in enumerate(widths):
            self.encoders.append(ConvBlock(cin, width, norm, stride=1 if level == 0 else 2))
            cin = width
        self.upsamples = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsamples.append(nn.ConvTranspose2d(cin, width, 2, stride=2, bias=False))
            self.decoders.append(ConvBlock(2 * width, width, norm))
            cin = width
        self.head = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        for upsample, decoder, skip in zip(self.upsamples, self.decoders, reversed(skips[:-1])):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)


def build_model(config: Config) -> UNet2D:
    """The network a config describes."""
    return UNet2D(config.in_channels, config.num_classes, tuple(config.widths), config.norm)


def load_weights(path: str | Path) -> dict:
    """A state dict from ``path``: plain, or under the key ``model`` of a training checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state
