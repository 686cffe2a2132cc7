"""The training loop: sampling, augmentation, Dice + CE, schedule, validation through the
inference pipeline, checkpoints with exact resume, logs. The run folder is a model folder:
``config.json`` + ``model.pt`` (best weights) are what inference loads."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from algorithm.backends import WEIGHTS_NAME, TorchBackend
from algorithm.config import Config
from algorithm.model import build_model, load_weights
from algorithm.preprocess import context_slices
from train import augment, synth
from train.dataset import Volume

log = logging.getLogger("train")
LAST = "last.pt"


VALIDATION = "validation"  # ValCase.set of the data's own validation subset


@dataclass
class ValCase:
    """A validation case at its original resolution, canonical layout; ``set`` names the validation
    set it belongs to (``VALIDATION``: the data's own validation subset), ``classes`` those labelled
    in it and ``catch_all`` a vertebra value that is not one level (``train.score.score_case``)."""

    name: str
    volume: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    set: str = VALIDATION
    classes: tuple[str, ...] = ("vertebra", "disc", "canal")
    catch_all: int | None = None


def _pools(volumes: list[Volume]) -> list[tuple[list[Volume], torch.Tensor]]:
    """(volumes with images, mask-only volumes), each with its slice counts as sampling weights."""
    pools = [[v for v in volumes if v.image is not None], [v for v in volumes if v.image is None]]
    return [(pool, torch.tensor([v.classes.shape[0] for v in pool], dtype=torch.float)) for pool in pools]


def _draw_volume(pools: list[tuple[list[Volume], torch.Tensor]], p: dict, gen: torch.Generator) -> Volume:
    """A volume, in proportion to slice counts within its pool: mask-only volumes with
    probability ``p_mask_only`` (when there are any), volumes with images otherwise."""
    (with_image, image_weights), (mask_only, mask_weights) = pools
    pool, weights = with_image, image_weights
    if not with_image or (mask_only and torch.rand(1, generator=gen).item() < p["p_mask_only"]):
        pool, weights = mask_only, mask_weights
    return pool[int(torch.multinomial(weights, 1, generator=gen))]


class Workers:
    """Processes that render training slices (``synth.sample_channels``, most of a batch's sampling
    time) in parallel. Forked with the volumes, which they share copy-on-write; each slice is
    rendered from its own seed drawn in the main process, so a batch is the same with any number
    of workers, and so is a resumed run."""

    def __init__(self, volumes: list[Volume], config: Config, p: dict, n: int):
        import multiprocessing

        self.position = {id(v): i for i, v in enumerate(volumes)}
        self.size = n
        self.pool = multiprocessing.get_context("fork").Pool(n, initializer=_worker_init, initargs=(volumes, config, p))

    def render(self, items: list[tuple[Volume, int, int]]) -> list[np.ndarray]:
        """Channels of each (volume, slice index, seed), in order."""
        return self.render_async(items).get()

    def render_async(self, items: list[tuple[Volume, int, int]]):
        """``render`` started in the background: its ``get()`` returns the channels."""
        return self.pool.starmap_async(_worker_render, [(self.position[id(v)], index, seed) for v, index, seed in items])

    def close(self) -> None:
        self.pool.terminate()


_WORKER: dict = {}


def _worker_init(volumes: list[Volume], config: Config, p: dict) -> None:
    _WORKER.update(volumes=volumes, config=config, p=p)  # the workers run numpy only, never torch


def _worker_render(position: int, index: int, seed: int) -> np.ndarray:
    return _render_one(_WORKER["volumes"][position], index, seed, _WORKER["config"], _WORKER["p"])


@dataclass
class Draw:
    """What the generator chose for one batch before rendering: per slice its class map, patch
    centre and either (volume, index, seed) to render or, without ``train``, its real channels."""

    classes: list[torch.Tensor]
    centres: list[torch.Tensor]
    renders: list[tuple[Volume, int, int]]
    chans: list[torch.Tensor]


def draw_batch(volumes: list[Volume], config: Config, p: dict, gen: torch.Generator, train: bool = True) -> Draw:
    """The slices of a batch, drawn in proportion to each volume's slice count; half of the patches
    are centred on a random foreground pixel (as nnU-Net oversamples foreground), the rest anywhere."""
    draw = Draw([], [], [], [])
    pools = _pools(volumes)
    for _ in range(config.batch_size):
        vol = _draw_volume(pools, p, gen)
        index = int(torch.randint(vol.classes.shape[0], (1,), generator=gen))
        cls = torch.from_numpy(vol.classes[index])
        fg = torch.nonzero(cls > 0)
        if len(fg) and torch.rand(1, generator=gen).item() < 0.5:
            draw.centres.append(fg[int(torch.randint(len(fg), (1,), generator=gen))].float())
        else:  # anywhere that keeps the patch inside the slice where it fits
            draw.centres.append(torch.tensor([min(m, n) / 2 + float(torch.rand(1, generator=gen)) * max(0, n - m) for n, m in zip(cls.shape, config.patch)]))
        if train:
            draw.renders.append((vol, index, int(torch.randint(2**62, (1,), generator=gen))))
        else:
            draw.chans.append(torch.from_numpy(context_slices(vol.image, index, vol.slice_spacing, config).astype(np.float32)))
        draw.classes.append(cls)
    return draw


def finish_batch(draw: Draw, rendered: list[np.ndarray], config: Config, p: dict, gen: torch.Generator, device: str, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The drawn slices with their ``rendered`` channels -> augmented patches (B, C, h, w) and class maps (B, h, w)."""
    chans = [torch.from_numpy(c) for c in rendered] if draw.renders else draw.chans
    # pad to a common size (bottom/right, so pixel coordinates stay valid) and transform at once
    hw = (max(c.shape[-2] for c in chans), max(c.shape[-1] for c in chans))
    x = torch.stack([F.pad(c, (0, hw[1] - c.shape[-1], 0, hw[0] - c.shape[-2]), value=float(c.min())) for c in chans]).to(device)
    y = torch.stack([F.pad(c, (0, hw[1] - c.shape[-1], 0, hw[0] - c.shape[-2])) for c in draw.classes]).to(device)
    grid = augment.sampling_grid(hw, config.patch, torch.stack(draw.centres).to(device), p, gen, train)
    x, y = augment.spatial(x, y, grid)
    if train:
        x = augment.intensity(augment.mirror(x, p, gen), p, gen)
    return x.contiguous(memory_format=torch.channels_last), y


def sample_batch(volumes: list[Volume], config: Config, p: dict, gen: torch.Generator, device: str, train: bool = True, workers: Workers | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of augmented 2.5D patches (B, C, h, w) and class maps (B, h, w): ``draw_batch``, each
    slice's channels real, remapped or synthetic, thin or thick (train/synth.py), rendered by
    ``workers`` where given (without ``train``: the real image's), then ``finish_batch``."""
    draw = draw_batch(volumes, config, p, gen, train)
    rendered = workers.render(draw.renders) if workers is not None else [_render_one(*r, config, p) for r in draw.renders]
    return finish_batch(draw, rendered, config, p, gen, device, train)


def render_ahead(device: str, workers: int) -> bool:
    """Whether the workers should render the next batch while the network trains: where the
    network does not need the CPU cores they would take (a GPU, or cores to spare). On the 2 cores
    here rendering ahead cut the wait for slices from about 180 to 34 ms a step but made the step
    slower (contention): docs/training.md."""
    return workers > 0 and (device == "cuda" or (os.cpu_count() or 1) >= torch.get_num_threads() + workers)


class BatchStream:
    """Training batches, the same as successive ``sample_batch`` calls; with ``ahead``, the next
    batch's slices are rendered by the workers while the caller trains on this one. The next batch
    is then drawn as soon as this one is finished, which is where ``sample_batch`` would draw it,
    so the generator's sequence is unchanged; ``state`` is the generator's state before that
    draw, for checkpoints (a resumed stream draws the same batch again)."""

    def __init__(self, volumes: list[Volume], config: Config, p: dict, gen: torch.Generator, device: str, workers: Workers | None = None, ahead: bool = True):
        self.volumes, self.config, self.p, self.gen, self.device, self.workers = volumes, config, p, gen, device, workers
        self.ahead = ahead and workers is not None
        self.pending: tuple[Draw, object] | None = None
        self._pending_state: torch.Tensor | None = None

    @property
    def state(self) -> torch.Tensor:
        """The generator's state at the start of the next batch not yet returned."""
        return self._pending_state if self.pending is not None else self.gen.get_state()

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.ahead:
            return sample_batch(self.volumes, self.config, self.p, self.gen, self.device, workers=self.workers)
        draw, rendering = self.pending or self._submit()
        x, y = finish_batch(draw, rendering.get(), self.config, self.p, self.gen, self.device)
        self.pending = self._submit()
        return x, y

    def _submit(self) -> tuple[Draw, object]:
        self._pending_state = self.gen.get_state()
        draw = draw_batch(self.volumes, self.config, self.p, self.gen)
        return draw, self.workers.render_async(draw.renders)


def _render_one(vol: Volume, index: int, seed: int, config: Config, p: dict) -> np.ndarray:
    return synth.sample_channels(vol, index, config, p, np.random.default_rng(seed))


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice over the foreground classes (batch Dice, as nnU-Net)."""
    logits = logits.float()
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + 1 - dice[1:].mean()


def learning_rate(config: Config, step: int, total: int) -> float:
    """Linear warm-up, then cosine or poly decay."""
    warm = config.warmup_epochs * config.steps_per_epoch
    if step < warm:
        return config.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    if config.schedule == "poly":
        return config.lr * (1 - t) ** 0.9
    return config.lr * 0.5 * (1 + math.cos(math.pi * t))


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.99, nesterov=True, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def native_bf16_cpu() -> bool:
    """The CPU does bf16 in hardware (AVX512-BF16 or AMX), so oneDNN runs bf16 convolutions fast."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def amp_dtype(device: str) -> torch.dtype | None:
    """The autocast dtype: on CUDA BF16 where the GPU supports it, else FP16; on the CPU BF16 where
    it is native (about 1.6x the training throughput of FP32 on 2 AMX cores), else None (FP32)."""
    if device != "cuda":
        return torch.bfloat16 if native_bf16_cpu() else None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None, grad_clip: float) -> float:
    """One optimisation step (autocast when ``dtype`` is set, gradient clipping); returns the loss."""
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = dice_ce_loss(net(x), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def validate(model: torch.nn.Module, cases: list[ValCase], config: Config, device: str) -> dict[str, float]:
    """Whole validation volumes through the inference pipeline (post-processing included), scored
    with class Dice. The data's own validation subset gives per-class means over cases
    (``spider_tools.evaluate.class_dice``) and per-case values, and ``mean``, the mean over classes,
    chooses the best epoch. Named sets (``spider-train --validation 2d``) give per set the pooled
    class Dice (``set:class``, ``train.score``), and ``mean`` is ``train.score.selection_score``."""
    from algorithm.class_head import load_class_head
    from spider_tools.evaluate import class_dice
    from algorithm.pipeline import Segmenter, segment_volume
    from train.score import KEYS, score_case, selection_score, summarize

    segmenter = Segmenter(config, TorchBackend(model, device), batch_size=16 if device == "cuda" else 4, head=load_class_head(device))
    scores: dict[str, list[float]] = {}
    per_set: dict[str, list[dict]] = {}
    result: dict[str, float] = {}
    for case in cases:
        pred = segment_volume(case.volume, case.spacing, segmenter)
        if case.set != VALIDATION:
            per_set.setdefault(case.set, []).append(score_case(case.labels.astype(np.int32), pred.astype(np.int32), case.classes, case.catch_all))
            continue
        for key, value in class_dice(case.labels, pred).items():
            scores.setdefault(key, []).append(value)
            result[f"{case.name}/{key}"] = value
    model.train()
    if per_set:
        summaries = {name: summarize(set_scores) for name, set_scores in per_set.items()}
        pooled = {f"{name}:{key}": summary[key] for name, summary in summaries.items() for key in KEYS if key in summary}
        return {**pooled, "mean": selection_score(summaries)}
    means = {key: float(np.nanmean(v)) for key, v in scores.items()}
    means["mean"] = float(np.nanmean(list(means.values())))
    return {**means, **result}


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(volumes: list[Volume], val_cases: list[ValCase], config: Config, out_dir: Path, resume: bool = False, device: str | None = None, epochs: int | None = None,
        stop_after: int | None = None, init: Path | None = None, workers: int = 0, mixed_precision: bool = True, compiled: bool = False) -> dict:
    """Train (or resume) in ``out_dir``; returns the best validation scores seen. ``stop_after``
    ends the run early after that epoch, leaving the schedule as if it went on (resume later);
    ``init`` starts a new run from existing weights; ``workers`` processes render the training
    slices (0: this process; the result is the same); ``mixed_precision``: autocast to
    ``amp_dtype(device)`` (False: FP32 throughout); ``compiled``: train through ``torch.compile``
    (about a minute of compilation at start, then faster steps; weights and checkpoints unchanged)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        config.save(out_dir)
    torch.manual_seed(config.seed + rank)
    gen = torch.Generator().manual_seed(config.seed + rank)
    p = augment.params(config.augment)
    pool = Workers(volumes, config, p, workers) if workers > 0 else None  # forked before the model goes to the GPU
    try:
        dtype = amp_dtype(device) if mixed_precision else None
        return _fit(volumes, val_cases, config, out_dir, resume, device, dtype, epochs, stop_after, init, gen, p, pool, rank, distributed, compiled)
    finally:
        if pool is not None:
            pool.close()


def _fit(volumes: list[Volume], val_cases: list[ValCase], config: Config, out_dir: Path, resume: bool, device: str, dtype: torch.dtype | None, epochs: int | None, stop_after: int | None,
         init: Path | None, gen: torch.Generator, p: dict, pool: Workers | None, rank: int, distributed: bool, compiled: bool) -> dict:
    """The training loop of ``fit``."""
    from tqdm import tqdm

    from train.report import Logger

    model = build_model(config)
    if init is not None:
        model.load_state_dict(load_weights(init))
    model = model.to(device, memory_format=torch.channels_last)  # faster on CUDA and on the CPU (oneDNN)
    optimizer = make_optimizer(model, config)
    log.info("training on %s in %s%s", device, str(dtype).replace("torch.", "") + " autocast" if dtype else "float32", ", compiled" if compiled else "")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    start_epoch, best = 0, {"mean": -1.0}
    if resume and (out_dir / LAST).is_file():
        state = torch.load(out_dir / LAST, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best = state["epoch"], state["best"]
        log.info("resumed from %s at epoch %d", out_dir / LAST, start_epoch)
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)
    if compiled:
        net = torch.compile(net)
    epochs = epochs or config.epochs
    total = epochs * config.steps_per_epoch
    logger = Logger(out_dir) if rank == 0 else None
    stream = BatchStream(volumes, config, p, gen, device, pool, render_ahead(device, pool.size if pool else 0))
    if rank == 0 and pool is not None:
        log.info("workers render %s", "the next batch while this one trains" if stream.ahead else "each batch before it trains (no cores to spare)")
    for epoch in range(start_epoch, min(epochs, stop_after or epochs)):
        model.train()
        losses, seen, t0 = [], 0, time.perf_counter()
        bar = tqdm(range(config.steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", unit="step", disable=rank != 0, leave=False)
        for step in bar:
            lr = learning_rate(config, epoch * config.steps_per_epoch + step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = stream.next()
            losses.append(train_step(net, optimizer, scaler, x, y, dtype, config.grad_clip))
            seen += x.shape[0]
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", slices_s=f"{seen / (time.perf_counter() - t0):.1f}")
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": lr, "slices_per_s": seen / (time.perf_counter() - t0)}
        last_epoch = epoch + 1 == epochs
        if rank == 0 and val_cases and ((epoch + 1) % config.val_every == 0 or last_epoch):
            scores = validate(model, val_cases, config, device)
            row.update({k: v for k, v in scores.items() if "/" not in k})
            if scores["mean"] > best["mean"]:
                best = {**scores, "epoch": epoch + 1}
                torch.save(model.state_dict(), out_dir / WEIGHTS_NAME)
        if rank == 0:
            if not val_cases:
                torch.save(model.state_dict(), out_dir / WEIGHTS_NAME)
            logger.log(row)
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "generator": stream.state, "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "best": best,
            }
            save_checkpoint(out_dir / LAST, state)
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if logger:
        logger.close()
    if distributed:
        torch.distributed.barrier()  # rank 0 may still be validating: leave together, or gloo can abort the other rank
        torch.distributed.destroy_process_group()
    return best
