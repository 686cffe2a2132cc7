"""Training on tiny synthetic data: one epoch, loss goes down, exact resume, aligned augmentation,
label mapping, splits by patient."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from algorithm.config import Config  # noqa: E402
from algorithm.labels import CANAL, DISC, VERTEBRA, to_classes  # noqa: E402
from train import augment  # noqa: E402
from train.cli import main as train_main  # noqa: E402
from train.dataset import Case, Volume, split  # noqa: E402
from train.train import dice_ce_loss, make_optimizer, sample_batch  # noqa: E402

TINY = {"widths": [4, 8, 16], "spacing": 1.5, "patch": [64, 64], "batch_size": 2, "steps_per_epoch": 3, "epochs": 2, "warmup_epochs": 0, "val_every": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from spider_tools.synthetic import write_spider_dataset

    folder = tmp_path_factory.mktemp("spider")
    write_spider_dataset(folder, n_cases=4, seed=5, max_size=96, validation_fraction=0.3)  # 2 training, 2 validation
    return folder


def tiny_config(tmp_path: Path, **overrides) -> Path:
    import json

    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY, **overrides}))
    return path


def random_volumes(n: int = 2) -> list[Volume]:
    rng = np.random.default_rng(0)
    return [Volume(f"v{i}", rng.standard_normal((5, 80, 70)).astype(np.float16), rng.integers(0, 4, (5, 80, 70), dtype=np.uint8), 3.0) for i in range(n)]


def test_train_one_epoch_writes_a_model_folder(tmp_path, dataset):
    out = tmp_path / "run"
    assert train_main(["--data", str(dataset), "--out", str(out), "--config", str(tiny_config(tmp_path)), "--epochs", "1"]) == 0
    for name in ("config.json", "model.pt", "last.pt", "log.csv", "curves.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert rows[0]["epoch"] == "1" and float(rows[0]["loss"]) > 0
    assert float(rows[0]["ClassDiceVertebrae"]) >= 0  # validation ran through the inference pipeline
    assert Config.load(out).widths == (4, 8, 16)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, dataset, workers):
    config = tiny_config(tmp_path, val_every=100, augment={"p_synth": 0.3, "p_remap": 0.3})
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["--data", str(dataset), "--config", str(config), "--epochs", "2", "--workers", workers]
    assert train_main([*common, "--out", str(straight)]) == 0
    assert train_main([*common, "--out", str(resumed), "--stop-after", "1"]) == 0
    assert len((resumed / "log.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert train_main([*common, "--out", str(resumed), "--resume"]) == 0
    loss = [[float(r["loss"]) for r in csv.DictReader((d / "log.csv").open())] for d in (straight, resumed)]
    assert len(loss[1]) == 2
    assert loss[1][1] == pytest.approx(loss[0][1], rel=1e-6)


def test_init_starts_from_given_weights(tmp_path, dataset):
    first, second = tmp_path / "first", tmp_path / "second"
    config = tiny_config(tmp_path, val_every=100)
    assert train_main(["--data", str(dataset), "--out", str(first), "--config", str(config), "--epochs", "1"]) == 0
    assert train_main(["--data", str(dataset), "--out", str(second), "--config", str(config), "--epochs", "1", "--init", str(first / "model.pt")]) == 0
    loss = [float(next(csv.DictReader((d / "log.csv").open()))["loss"]) for d in (first, second)]
    assert loss[1] < loss[0]  # the second run starts where the first ended


def test_distributed_training_with_torchrun(tmp_path, dataset):
    """Two CPU processes (gloo) through torchrun: the DistributedDataParallel path, same command."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "train.cli",
           "--data", str(dataset), "--out", str(out), "--config", str(tiny_config(tmp_path)), "--epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "model.pt").is_file() and len((out / "log.csv").read_text().splitlines()) == 2


def test_loss_decreases_on_a_fixed_batch():
    config = Config(widths=(4, 8, 16), patch=(64, 64), batch_size=4, lr=1e-2)
    from algorithm.model import build_model

    torch.manual_seed(0)
    x, y = sample_batch(random_volumes(), config, augment.params(), torch.Generator().manual_seed(0), "cpu", train=False)
    y = torch.bucketize(x[:, config.context].contiguous(), torch.tensor([-0.5, 0.0, 0.5]))  # a learnable 4-class target
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    losses = []
    for _ in range(40):
        loss = dice_ce_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])


def test_augmentation_keeps_image_and_mask_aligned():
    """A checkerboard image whose classes are its own squares must still match after every
    spatial transform (only pixels on square edges may differ)."""
    config = Config(patch=(96, 96), batch_size=6, context=0)
    yy, xx = np.mgrid[:120, :100]
    board = (((yy // 12) + (xx // 12)) % 2 + 1).astype(np.uint8)
    vol = Volume("grid", np.repeat(board[None].astype(np.float16), 3, 0), np.repeat(board[None], 3, 0), 3.0)
    p = augment.params({"p_rotate": 1.0, "p_scale": 1.0, "p_elastic": 1.0, "p_mirror": 0.0, **{k: 0.0 for k in augment.DEFAULTS if k.startswith("p_") and k not in ("p_rotate", "p_scale", "p_elastic", "p_mirror")}})
    x, y = sample_batch([vol], config, p, torch.Generator().manual_seed(3), "cpu")
    image = x[:, 0].numpy()
    inside = y.numpy() > 0
    agree = np.round(image[inside]) == y.numpy()[inside]
    assert agree.mean() > 0.9


def test_mirror_reverses_context_only():
    batch = torch.arange(3.0).view(1, 3, 1, 1).repeat(2, 1, 4, 4)
    out = augment.mirror(batch, {"p_mirror": 1.0}, torch.Generator().manual_seed(0))
    assert out[:, :, 0, 0].tolist() == [[2, 1, 0], [2, 1, 0]]


def test_unknown_augmentation_key_is_an_error():
    with pytest.raises(ValueError):
        augment.params({"p_nonsense": 1.0})


@pytest.mark.parametrize("vertebrae, discs", [(range(1, 6), range(201, 206)), (range(20, 25), range(220, 225))])
def test_label_mapping_both_conventions(vertebrae, discs):
    mask = np.array([0, 100, *vertebrae, *discs, 105, 118], dtype=np.int16)
    classes = to_classes(mask)
    assert classes[0] == 0 and classes[1] == CANAL
    assert set(classes[2 : 2 + len(vertebrae)]) == {VERTEBRA}
    assert set(classes[2 + len(vertebrae) : -2]) == {DISC}
    assert set(classes[-2:]) == {VERTEBRA}  # partially visible vertebrae are vertebrae


def test_mask_off_the_image_grid_is_refused(tmp_path):
    import SimpleITK as sitk

    from algorithm.io import InputError
    from train.dataset import load_canonical

    image = sitk.GetImageFromArray(np.zeros((4, 32, 32), np.int16))
    mask = sitk.GetImageFromArray(np.ones((4, 32, 32), np.int16))
    mask.SetOrigin((0.0, 0.0, 5.0))
    sitk.WriteImage(image, str(tmp_path / "i.mha"))
    sitk.WriteImage(mask, str(tmp_path / "m.mha"))
    with pytest.raises(InputError, match="origin"):
        load_canonical(Case("1_t2", tmp_path / "i.mha", tmp_path / "m.mha", "training"))


def test_folds_never_split_a_patient():
    cases = [Case(f"{pid}_{seq}", Path("i"), Path("m"), "training") for pid in range(20) for seq in ("t1", "t2")]
    for fold in range(5):
        train, val = split(cases, fold)
        assert val and not {c.patient for c in train} & {c.patient for c in val}
    assert sum(len(split(cases, f)[1]) for f in range(5)) == len(cases)


def test_show_augmentations_writes_a_picture(tmp_path, dataset):
    out = tmp_path / "aug"
    assert train_main(["--data", str(dataset), "--out", str(out), "--config", str(tiny_config(tmp_path)), "--show-augmentations"]) == 0
    assert (out / "augmentations.png").stat().st_size > 1000


def test_worker_processes_render_the_same_batches(tmp_path, dataset):
    from train.dataset import list_cases, load_volumes
    from train.train import Workers

    config = Config.from_dict({**TINY, "batch_size": 6, "augment": {"p_synth": 0.4, "p_remap": 0.4, "p_thick": 0.5, "p_nocontext": 0.2}})
    volumes = load_volumes(list_cases(dataset), config, None)
    p = augment.params(config.augment)
    serial = sample_batch(volumes, config, p, torch.Generator().manual_seed(3), "cpu")
    workers = Workers(volumes, config, p, 2)
    try:
        parallel = sample_batch(volumes, config, p, torch.Generator().manual_seed(3), "cpu", workers=workers)
    finally:
        workers.close()
    assert torch.equal(serial[0], parallel[0]) and torch.equal(serial[1], parallel[1])


def test_batch_stream_renders_ahead_and_gives_the_same_batches(tmp_path, dataset):
    from train.dataset import list_cases, load_volumes
    from train.train import BatchStream, Workers

    config = Config.from_dict({**TINY, "batch_size": 4, "augment": {"p_synth": 0.4, "p_remap": 0.4, "p_thick": 0.5}})
    volumes = load_volumes(list_cases(dataset), config, None)
    p = augment.params(config.augment)
    gen = torch.Generator().manual_seed(5)
    serial = [sample_batch(volumes, config, p, gen, "cpu") for _ in range(3)]
    after_two = torch.Generator().manual_seed(5)
    for _ in range(2):
        sample_batch(volumes, config, p, after_two, "cpu")
    workers = Workers(volumes, config, p, 2)
    try:
        stream = BatchStream(volumes, config, p, torch.Generator().manual_seed(5), "cpu", workers)
        streamed = [stream.next() for _ in range(2)]
        assert stream.pending is not None  # the third batch is already rendering
        assert torch.equal(stream.state, after_two.get_state())  # a checkpoint here resumes at the third batch
        streamed.append(stream.next())
    finally:
        workers.close()
    for (x, y), (sx, sy) in zip(serial, streamed):
        assert torch.equal(x, sx) and torch.equal(y, sy)


def test_training_with_workers_is_the_same_run(tmp_path, dataset):
    config = tiny_config(tmp_path, val_every=100, augment={"p_synth": 0.3, "p_remap": 0.3, "p_thick": 0.3})
    runs = {n: tmp_path / f"w{n}" for n in (0, 2)}
    for n, out in runs.items():
        assert train_main(["--data", str(dataset), "--out", str(out), "--config", str(config), "--epochs", "1", "--workers", str(n)]) == 0
    losses = [[float(r["loss"]) for r in csv.DictReader((out / "log.csv").open())] for out in runs.values()]
    assert losses[0] == losses[1]


@pytest.mark.parametrize("workers", [0, 1])
def test_throughput_measures_the_contrast_mix(workers):
    from train.throughput import measure

    config = Config.from_dict({**TINY, "augment": {"p_synth": 0.5, "p_remap": 0.5, "p_thick": 0.5}})
    result = measure(config, "cpu", steps=1, amp=False, warmup=0, workers=workers)
    assert result["workers"] == workers and result["slices_per_s"] > 0


def test_cpu_autocast_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    from train import train as T

    monkeypatch.setattr(T, "native_bf16_cpu", lambda: False)
    assert T.amp_dtype("cpu") is None
    monkeypatch.setattr(T, "native_bf16_cpu", lambda: True)
    assert T.amp_dtype("cpu") == torch.bfloat16


def test_bf16_training_step_on_the_cpu_learns():
    from algorithm.model import build_model
    from train.train import train_step

    config = Config(widths=(4, 8, 16), patch=(64, 64), batch_size=4, lr=1e-2)
    torch.manual_seed(0)
    x, _ = sample_batch(random_volumes(), config, augment.params(), torch.Generator().manual_seed(0), "cpu", train=False)
    y = torch.bucketize(x[:, config.context].contiguous(), torch.tensor([-0.5, 0.0, 0.5]))
    model = build_model(config)
    optimizer, scaler = make_optimizer(model, config), torch.amp.GradScaler("cpu", enabled=False)
    losses = [train_step(model, optimizer, scaler, x, y, torch.bfloat16, config.grad_clip) for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32 under autocast


@pytest.mark.parametrize("flags, expected", [(["--fp32"], "float32"), ([], None)])
def test_training_precision_is_logged(tmp_path, dataset, caplog, flags, expected):
    import logging

    from train.train import amp_dtype

    caplog.set_level(logging.INFO, "train")
    assert train_main(["--data", str(dataset), "--out", str(tmp_path / "run"), "--config", str(tiny_config(tmp_path, val_every=100)), "--epochs", "1", *flags]) == 0
    expected = expected or ("bfloat16 autocast" if amp_dtype("cpu") else "float32")
    assert f"training on cpu in {expected}" in caplog.text


def test_validation_on_named_sets_pools_each_set_and_averages_the_sets():
    from algorithm.model import build_model
    from train.score import KEYS
    from train.train import ValCase, validate

    config = Config.from_dict(TINY)
    rng = np.random.default_rng(3)
    labels = np.zeros((3, 64, 64), np.int16)
    labels[:, 10:30, 10:30], labels[:, 30:34, 10:30], labels[:, 10:50, 40:44] = 1, 201, 100
    cases = [ValCase(f"c{i}", rng.standard_normal(labels.shape).astype(np.float32), labels, (4.0, 1.5, 1.5), set=name, classes=classes)
             for i, (name, classes) in enumerate((("a", KEYS), ("a", KEYS), ("b", ("vertebra",))))]
    scores = validate(build_model(config), cases, config, "cpu")
    assert {"a:vertebra", "a:disc", "a:canal", "b:vertebra"} <= set(scores) and "b:disc" not in scores
    expected = (np.nanmean([scores["a:vertebra"], scores["a:disc"], scores["a:canal"]]) + scores["b:vertebra"]) / 2
    assert scores["mean"] == pytest.approx(expected)
