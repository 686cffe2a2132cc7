"""Function-preserving widening: a wider U-Net that computes exactly what a trained one computes.

    python -m train.widen RUN --widths 12,24,48,96,192,320 OUT     # then spider-train --init OUT/model.pt

For a capacity A/B that starts both arms from the same function (Net2Net, Chen et al., ICLR
2016, with zero outgoing weights): every old weight keeps its place; the new channels get the
fresh network's random incoming weights and BatchNorm defaults, and every weight from a new
channel into an old one is zero, so the old channels, and the logits, are unchanged until
training moves them. The decoders' first convolution reads [upsampled, skip] concatenated, so
its input channels are mapped block by block. OUT gets RUN's config.json with the new widths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from algorithm.config import Config
from algorithm.model import build_model, load_weights

WEIGHTS = "model.pt"


def _index(old: int, new: int, concat: bool) -> torch.Tensor:
    """Where each old channel sits among the new ones (two blocks of old/2 in new/2 if ``concat``)."""
    if not concat:
        return torch.arange(old)
    half = torch.arange(old // 2)
    return torch.cat([half, half + new // 2])


def widen_state(old_model: nn.Module, new_model: nn.Module) -> dict:
    """The state dict of ``new_model`` (fresh, wider, same structure) with ``old_model``'s weights
    placed so that it computes the same function."""
    state = {k: v.clone() for k, v in new_model.state_dict().items()}
    old_modules = dict(old_model.named_modules())
    for name, new in new_model.named_modules():
        old = old_modules[name]
        if isinstance(new, (nn.Conv2d, nn.ConvTranspose2d)):
            concat = name.startswith("decoders.") and name.endswith(".0")
            ins = _index(old.in_channels, new.in_channels, concat)
            outs = torch.arange(old.out_channels)
            weight = state[f"{name}.weight"]
            if isinstance(new, nn.ConvTranspose2d):  # weight (in, out, kh, kw)
                weight[:, outs] = 0
                weight[ins[:, None], outs] = old.weight.detach()
            else:  # weight (out, in, kh, kw)
                weight[outs] = 0
                weight[outs[:, None], ins] = old.weight.detach()
            if new.bias is not None:
                state[f"{name}.bias"][outs] = old.bias.detach()
        elif isinstance(new, nn.BatchNorm2d):
            outs = torch.arange(old.num_features)
            for key in ("weight", "bias", "running_mean", "running_var"):
                state[f"{name}.{key}"][outs] = getattr(old, key).detach()
            state[f"{name}.num_batches_tracked"] = old.num_batches_tracked.clone()
        elif isinstance(new, nn.InstanceNorm2d) and new.affine:
            outs = torch.arange(old.num_features)
            for key in ("weight", "bias"):
                state[f"{name}.{key}"][outs] = getattr(old, key).detach()
    return state


def widen(run: Path, widths: list[int], out: Path, seed: int = 0) -> Path:
    """Write OUT/config.json (RUN's, with ``widths``) and OUT/model.pt (RUN's weights, widened)."""
    config = Config.load(run)
    if len(widths) != len(config.widths) or any(n < o for n, o in zip(widths, config.widths)):
        raise ValueError(f"widths {widths} must have {len(config.widths)} levels, each at least {list(config.widths)}")
    old_model = build_model(config)
    old_model.load_state_dict(load_weights(run / WEIGHTS))
    config.widths = tuple(widths)
    torch.manual_seed(seed)
    new_model = build_model(config)
    state = widen_state(old_model, new_model)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out)
    torch.save(state, out / WEIGHTS)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.widen", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run or model folder (config.json + model.pt)")
    parser.add_argument("--widths", required=True, help="comma-separated, one per level, none narrower than RUN's")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        out = widen(args.run, [int(w) for w in args.widths.split(",")], args.out)
    except (OSError, ValueError) as err:
        print(f"train.widen: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out / WEIGHTS} (widths {args.widths}) and {out}/config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
