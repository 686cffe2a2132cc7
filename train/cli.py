"""spider-train: fit the 2D U-Net on a folder in SPIDER layout."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spider-train", description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="folder with images/, masks/ and overview.csv")
    parser.add_argument("--out", required=True, type=Path, help="run folder (config.json, model.pt, last.pt, logs)")
    parser.add_argument("--config", type=Path, help="JSON file of Config overrides (a run folder's config.json works)")
    parser.add_argument("--init", type=Path, metavar="WEIGHTS", help="start from these weights (a model.pt of the same architecture), e.g. to fine-tune")
    parser.add_argument("--fold", type=int, help="validate on fold K of 5 by patient instead of the official split")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (exactly)")
    parser.add_argument("--epochs", type=int, help="override the config's epoch count")
    parser.add_argument("--stop-after", type=int, metavar="EPOCHS", help="stop after this many epochs (the schedule still spans all; continue with --resume)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--fp32", action="store_true", help="train in float32 (default: autocast to bf16 on CPUs with AVX512-BF16 or AMX, bf16/fp16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="train through torch.compile (about a minute to compile, then faster steps; needs a C++ compiler on the CPU)")
    parser.add_argument("--workers", type=int, default=0, metavar="N", help="processes that render training slices (0: the training process; the same batches either way)")
    parser.add_argument("--cache", type=Path, help="preprocessed-volume cache (default OUT/../cache)")
    parser.add_argument("--masks", type=Path, action="append", default=[], metavar="DIR", help="also train on these mask-only SPIDER masks (synthetic images; repeatable); masks of validation patients are left out")
    parser.add_argument("--validation", choices=("subset", "2d"), default="subset",
                        help="checkpoints chosen on the data's validation subset (default), or on the 2D validation of train.score.selection_sets "
                             "for a thick-slice (T1/T2) model, read from the folder above --data (spider-slices/, spider-t2space/)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NAME", help="leave out cases/masks with these names (e.g. series whose slices you validate on)")
    parser.add_argument("--show-augmentations", action="store_true", help="write OUT/augmentations.png and exit")
    parser.add_argument("--reference", type=Path, metavar="DIR", help="with --show-augmentations: real slices to show beside the samples (spider-slices/t1t2-vertebrae)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from algorithm.config import Config
    from algorithm.io import InputError
    from train.dataset import list_cases, list_masks, load_canonical, load_volumes, split

    overrides = json.loads(args.config.read_text()) if args.config else {}
    if args.resume and (args.out / "config.json").is_file():
        overrides = json.loads((args.out / "config.json").read_text())
    config = Config.from_dict(overrides)
    train_cases, val_cases = split(list_cases(args.data), args.fold)
    held_out = {c.patient for c in val_cases}
    train_cases += [c for folder in args.masks for c in list_masks(folder) if c.patient not in held_out]
    excluded = set(args.exclude)
    train_cases = [c for c in train_cases if c.name not in excluded]
    cache = args.cache or args.out.parent / "cache"
    volumes = load_volumes(train_cases, config, cache)
    if not any(v.image is not None for v in volumes):
        raise InputError(f"{args.data}: no usable training case")
    if args.show_augmentations:
        from train.preview import show_augmentations

        args.out.mkdir(parents=True, exist_ok=True)
        print(show_augmentations(volumes, config, args.out / "augmentations.png", reference=args.reference))
        return 0
    from train.train import ValCase, fit

    val = []
    for case in val_cases if args.validation == "subset" else []:
        try:
            val.append(ValCase(case.name, *load_canonical(case)))
        except InputError as err:
            logging.getLogger("train").warning("skipping: %s", err)
    if args.validation == "2d":
        from train.score import selection_sets

        val = [ValCase(it.name, *it.load(), set=name, classes=it.classes, catch_all=it.catch_all)
               for name, items in selection_sets(args.data.parent).items() for it in items]
    logging.getLogger("train").info("%d training volumes, %d validation volumes", len(volumes), len(val))
    best = fit(volumes, val, config, args.out, resume=args.resume, device=args.device, epochs=args.epochs, stop_after=args.stop_after, init=args.init, workers=args.workers, mixed_precision=not args.fp32, compiled=args.compile)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(best, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from algorithm.io import InputError

    try:
        return run(args)
    except (InputError, ValueError) as err:
        print(f"spider-train: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
