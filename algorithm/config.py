"""Model configuration: one JSON file saved beside the weights, read by training and inference."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

CONFIG_NAME = "config.json"


@dataclass
class Config:
    """Everything that defines a model's input, architecture and training recipe."""

    # preprocessing (shared by training and inference)
    spacing: float = 0.75  # in-plane spacing in mm the network sees
    context: int = 1  # neighbouring slices on each side fed as extra channels (2.5D)
    context_mm: float = 3.5  # distance of each context slice, interpolated along the sagittal axis
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    # architecture
    widths: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    num_classes: int = 4
    norm: str = "batch"  # "batch" (foldable into the convolutions at export) or "instance"
    # routing: the sagittal slice spacings [low, high) in mm of the series this model is for (algorithm.routing)
    sagittal_spacing_mm: tuple[float, float] = (0.0, 1000.0)
    # post-processing
    min_component_mm3: float = 100.0
    partial_vertebrae: bool = False  # vertebrae cut by the superior/inferior edge -> 101-125 (the released masks never do)
    # training recipe (ignored at inference)
    patch: tuple[int, int] = (256, 256)
    batch_size: int = 8
    epochs: int = 100
    steps_per_epoch: int = 100
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: int = 2
    grad_clip: float = 12.0
    val_every: int = 5
    augment: dict = field(default_factory=dict)
    seed: int = 0

    @property
    def in_channels(self) -> int:
        return 2 * self.context + 1

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this (one halving per level)."""
        return 2 ** (len(self.widths) - 1)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        return cls.from_dict(json.loads(path.read_text()))
