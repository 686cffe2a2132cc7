"""Which model segments a series: chosen from its header alone, by the sagittal slice spacing.

A model root is either one model folder (a ``config.json`` beside the weights: that model for
every series) or a folder of model folders, each of which says in its config which sagittal
spacings it is for (``Config.sagittal_spacing_mm``, [low, high) in mm). The bundled root holds a
model for thin-slice 3D series (T2-SPACE, about 0.9 mm) and one for thick-slice 2D series (T1 and
T2 turbo spin echo, 3.3-9.6 mm).
"""

from __future__ import annotations

from pathlib import Path

from algorithm.config import CONFIG_NAME, Config
from algorithm.io import InputError


def _folders(root: Path) -> list[Path]:
    """The model folders of a model root: the root itself when it holds a config, else its
    subfolders that do (sorted by name); none where neither."""
    if (root / CONFIG_NAME).is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / CONFIG_NAME).is_file()) if root.is_dir() else []


def holds_model(root: Path) -> bool:
    """True if ``root`` is a model root: a model folder, or a folder of them."""
    return bool(_folders(root))


def model_folders(root: Path) -> dict[Path, Config]:
    """The model folders of a model root with their configs (``_folders``). Raises InputError when
    there is none."""
    folders = _folders(root)
    if not folders:
        raise InputError(f"{root}: no model folder (a config.json, or subfolders that hold one)")
    return {folder: Config.load(folder) for folder in folders}


def choose(models: dict[Path, Config], slice_mm: float) -> Path:
    """The model for a series with sagittal slice spacing ``slice_mm``: the only model of a
    single-model root, else the first whose ``sagittal_spacing_mm`` range holds it."""
    if len(models) == 1:
        return next(iter(models))
    for folder, config in models.items():
        low, high = config.sagittal_spacing_mm
        if low <= slice_mm < high:
            return folder
    ranges = ", ".join(f"{folder.name} {config.sagittal_spacing_mm[0]:g}-{config.sagittal_spacing_mm[1]:g} mm" for folder, config in models.items())
    raise InputError(f"no model for a sagittal spacing of {slice_mm:.2f} mm (models: {ranges})")
