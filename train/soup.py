"""Weight-space ensembling: a model whose weights interpolate two runs of one lineage.

    python -m train.soup RUN_A RUN_B --weight W OUT      # then ./export.sh OUT

OUT gets RUN_A's config.json and the weights (1 - W) * A + W * B (BatchNorm running statistics
interpolated alike; integer buffers such as the batch counter taken from A). Both runs must be
of the same architecture, and should share a lineage (one fine-tuned from the other, as in
WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): averaging
unrelated networks gives noise. RUN_A / RUN_B: run or model folders (config.json + model.pt) or
weight files (then OUT takes the config of the folder that holds RUN_A).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from algorithm.config import CONFIG_NAME, Config
from algorithm.model import load_weights

WEIGHTS = "model.pt"


def interpolate(a: dict, b: dict, weight: float) -> dict:
    """State dict (1 - weight) * a + weight * b, computed in float64; non-float tensors from ``a``."""
    if a.keys() != b.keys():
        raise ValueError(f"the two models differ in their tensors: {sorted(set(a) ^ set(b))[:5]}")
    out = {}
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            raise ValueError(f"{name}: shape {tuple(x.shape)} against {tuple(y.shape)}")
        out[name] = ((1 - weight) * x.double() + weight * y.double()).to(x.dtype) if x.is_floating_point() else x.clone()
    return out


def _weights(path: Path) -> tuple[Path, Path]:
    """(weights file, folder with its config.json) of a run folder, model folder or weights file."""
    return (path / WEIGHTS, path) if path.is_dir() else (path, path.parent)


def soup(run_a: Path, run_b: Path, weight: float, out: Path) -> Path:
    """Write OUT/config.json (RUN_A's) and OUT/model.pt (the interpolated weights); return OUT."""
    (weights_a, folder_a), (weights_b, folder_b) = _weights(run_a), _weights(run_b)
    config_a = Config.load(folder_a)
    if (folder_b / CONFIG_NAME).is_file() and Config.load(folder_b).widths != config_a.widths:
        raise ValueError(f"{run_a} and {run_b} are different architectures (widths {config_a.widths} against {Config.load(folder_b).widths})")
    state = interpolate(load_weights(weights_a), load_weights(weights_b), weight)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / WEIGHTS)
    if (folder_a / CONFIG_NAME).resolve() != (out / CONFIG_NAME).resolve():
        shutil.copy(folder_a / CONFIG_NAME, out / CONFIG_NAME)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.soup", description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--weight", type=float, required=True, help="share of RUN_B, 0..1")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if not 0 <= args.weight <= 1:
        parser.error("--weight must lie in 0..1")
    try:
        out = soup(args.run_a, args.run_b, args.weight, args.out)
    except (OSError, ValueError) as err:
        print(f"train.soup: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out / WEIGHTS} ({1 - args.weight:g} x {args.run_a} + {args.weight:g} x {args.run_b}) and {out / CONFIG_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
