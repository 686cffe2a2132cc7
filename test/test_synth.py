"""Contrast and acquisition randomisation (train/synth.py), mask-only volumes, the training
cache key, and the per-contrast scorer (train/score.py), on small synthetic arrays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from algorithm.config import Config  # noqa: E402
from train import augment, dataset, synth  # noqa: E402
from train.dataset import Case, Volume  # noqa: E402
from train.score import SyntheticItem, format_differences, score_case, synthetic_sets, validation_sets  # noqa: E402
from train.train import sample_batch  # noqa: E402

CONFIG = Config(context=1, context_mm=3.5, patch=(32, 32), batch_size=4, widths=(4, 8))


def toy_labels(n: int = 12, h: int = 48, w: int = 40) -> np.ndarray:
    """A column of three vertebrae with discs between them, and a canal behind, in every slice."""
    labels = np.zeros((n, h, w), np.int16)
    for k, top in enumerate((4, 18, 32)):
        labels[:, top : top + 10, 8:24] = 3 - k
        if k < 2:
            labels[:, top + 10 : top + 14, 8:24] = 200 + 2 - k
    labels[:, :, 27:31] = 100
    return labels


def toy_volume(n: int = 12, spacing: float = 0.9, image: bool = True, seed: int = 0) -> Volume:
    labels = toy_labels(n)
    tissues = synth.instance_tissues(labels)
    from algorithm.labels import to_classes

    img = None
    if image:
        img = np.random.default_rng(seed).normal(size=labels.shape).astype(np.float16)
        tissues = synth.background_tissues(img, tissues)
    return Volume("toy", img, to_classes(labels), spacing, tissues)


def test_instance_tissues_maps_every_structure_to_its_own_id():
    labels = np.array([0, 1, 2, 101, 100, 201, 202, 24, 224])
    t = synth.instance_tissues(labels)
    assert t[0] == 0 and t[4] == synth.CANAL_TISSUE
    assert t[1] == t[3] == synth.VERTEBRA_TISSUE + 1  # 1 and its partially visible twin 101
    assert t[1] != t[2] and synth.VERTEBRA_TISSUE <= t[7] < synth.DISC_TISSUE
    assert t[5] != t[6] and synth.DISC_TISSUE <= t[8] < synth.N_TISSUES


def test_background_tissues_cluster_plateaus_in_order():
    image = np.repeat(np.repeat(np.array([[0.0, 1.0], [2.0, 3.0]]), 20, 0), 20, 1)[None].repeat(2, 0)
    tissues = np.zeros(image.shape, np.uint8)
    tissues[:, :3, :3] = synth.CANAL_TISSUE  # a structure: must stay untouched
    out = synth.background_tissues(image, tissues)
    assert (out[:, :3, :3] == synth.CANAL_TISSUE).all()
    assert out[0, 10, 30] == 1 and out[0, 30, 10] == 2 and out[0, 30, 30] == 3 and out[0, 10, 10] == 0


def test_tissue_intensities_give_every_ordering_of_canal_and_vertebra():
    rng = np.random.default_rng(0)
    luts = [synth.tissue_intensities(rng) for _ in range(300)]
    canal_brighter = [lut[synth.CANAL_TISSUE] > lut[synth.VERTEBRA_TISSUE] for lut in luts]
    disc_brighter = [lut[synth.DISC_TISSUE] > lut[synth.VERTEBRA_TISSUE] for lut in luts]
    assert 0.2 < np.mean(canal_brighter) < 0.8 and 0.2 < np.mean(disc_brighter) < 0.8
    assert all(((lut >= 0) & (lut <= 1)).all() for lut in luts)


def test_remap_moves_tissues_and_keeps_texture_finite():
    vol = toy_volume()
    out = synth.remap(vol.image, vol.tissues, np.random.default_rng(1))
    assert out.shape == vol.image.shape and np.isfinite(out).all()
    means = [out[vol.tissues == t].mean() for t in np.unique(vol.tissues)]
    assert np.ptp(means) > 0.1  # tissues no longer share one level


def test_thick_slices_average_slabs_and_interpolate_context_between_them():
    n = 40
    ramp = np.arange(n, dtype=np.float16)[:, None, None] * np.ones((1, 8, 8), np.float16)
    vol = Volume("ramp", ramp, np.zeros((n, 8, 8), np.uint8), 0.9, np.zeros((n, 8, 8), np.uint8))
    p = augment.params({"thick_min": 4.5, "thick_max": 4.5})
    channels = synth.thick_slices(vol, 20, CONFIG, p, "real", np.random.default_rng(0), None)
    assert channels.shape == (3, 8, 8)
    assert channels[1, 0, 0] == pytest.approx(20.0)  # symmetric slab around slice 20
    # context 3.5 mm away, interpolated between slabs: about 3.9 slices of 0.9 mm either side
    assert channels[0, 0, 0] == pytest.approx(20 - 3.5 / 0.9, abs=0.6)
    assert channels[2, 0, 0] == pytest.approx(20 + 3.5 / 0.9, abs=0.6)


def test_typical_thickness_draws_only_the_typical_range():
    n = 40
    square = ((np.arange(n) - 20.0) ** 2).astype(np.float16)[:, None, None] * np.ones((1, 8, 8), np.float16)
    vol = Volume("square", square, np.zeros((n, 8, 8), np.uint8), 0.9, np.zeros((n, 8, 8), np.uint8))

    def centre(overrides: dict, seed: int) -> float:
        p = augment.params({"thick_min": 3.3, "thick_max": 9.6, **overrides})
        return float(synth.thick_slices(vol, 20, CONFIG, p, "real", np.random.default_rng(seed), None)[1, 0, 0])

    # a 3.3 mm slab holds slices 19-21 (mean square 2/3); a 9.6 mm one reaches 5 slices out
    assert all(centre({"p_thick_typical": 1.0, "thick_typical_max": 3.3}, s) == pytest.approx(2 / 3, abs=0.01) for s in range(8))
    assert max(centre({}, s) for s in range(8)) > 2


def test_no_context_repeats_the_centre_slice():
    vol = toy_volume()
    channels = synth.sample_channels(vol, 5, CONFIG, augment.params({"p_nocontext": 1.0}), np.random.default_rng(0))
    assert np.array_equal(channels[0], channels[1]) and np.array_equal(channels[2], channels[1])


@pytest.mark.parametrize("overrides", [{"p_synth": 1.0}, {"p_remap": 1.0}, {"p_thick": 1.0}, {"p_thick": 1.0, "p_synth": 1.0}])
def test_every_kind_of_sample_is_normalised_and_finite(overrides):
    channels = synth.sample_channels(toy_volume(), 6, CONFIG, augment.params(overrides), np.random.default_rng(2))
    assert channels.shape == (3, 48, 40) and channels.dtype == np.float32 and np.isfinite(channels).all()
    if "p_synth" in overrides or "p_remap" in overrides:
        assert abs(channels.mean()) < 0.5 and 0.5 < channels.std() < 1.5


def test_mask_only_volumes_are_drawn_synthetic_and_aligned():
    volumes = [toy_volume(), toy_volume(n=5, spacing=4.0, image=False)]
    p = augment.params({"p_mask_only": 1.0, "p_rotate": 0, "p_scale": 0, "p_elastic": 0})
    x, y = sample_batch(volumes, CONFIG, p, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == (4, 3, 32, 32) and torch.isfinite(x).all()
    assert set(torch.unique(y).tolist()) <= {0, 1, 2, 3}


def test_cache_key_follows_the_preprocessing_code(tmp_path, monkeypatch):
    for name in ("i.mha", "m.mha"):
        (tmp_path / name).write_bytes(b"x")
    case = Case("1_t2", tmp_path / "i.mha", tmp_path / "m.mha", "training")
    monkeypatch.setattr(dataset, "preprocessing_version", lambda: "old")
    before = dataset._cache_key(case, CONFIG)
    monkeypatch.setattr(dataset, "preprocessing_version", lambda: "new")
    assert dataset._cache_key(case, CONFIG) != before


def test_preprocessing_version_is_stable():
    assert dataset.preprocessing_version() == dataset.preprocessing_version()


def test_score_case_counts_levels_and_ignores_partial_vertebrae():
    ref = np.zeros((1, 20, 10), np.int32)
    ref[0, 0:5], ref[0, 5:7], ref[0, 7:12], ref[0, 15:20] = 2, 201, 1, 101
    pred = np.zeros_like(ref)
    pred[0, 0:12] = 3  # one label over both levels: covers each fully, so both are found...
    pred[0, 5:7] = 202
    pred[0, 15:20] = 5  # ...and the prediction on the partially visible vertebra is ignored
    s = score_case(ref, pred, ("vertebra", "disc", "canal"))
    assert s["levels"] == 2 and s["levels_found"] == 2
    assert s["vertebra"] == pytest.approx(1.0) and s["disc"] == pytest.approx(1.0) and np.isnan(s["canal"])
    pred[0, 7:12] = 0
    assert score_case(ref, pred, ("vertebra",))["levels_found"] == 1


def test_score_case_does_not_count_a_catch_all_label_as_a_level():
    # spider-slices: 7 = "any vertebra above", here two bodies with a disc (207 = any disc above) between
    ref = np.zeros((1, 30, 10), np.int32)
    ref[0, 0:5], ref[0, 5:7], ref[0, 7:12], ref[0, 12:14], ref[0, 14:19] = 7, 207, 7, 206, 6
    pred = np.zeros_like(ref)
    pred[0, 0:5], pred[0, 5:7], pred[0, 7:12], pred[0, 12:14], pred[0, 14:19] = 3, 203, 2, 202, 1  # right: two bodies
    assert score_case(ref, pred, ("vertebra",))["levels"] == 2  # 7 looks like one level split in two
    s = score_case(ref, pred, ("vertebra",), catch_all=7)
    assert s["levels"] == 1 and s["levels_found"] == 1 and s["vertebra"] == pytest.approx(1.0)


def test_score_differences_against_a_baseline():
    results = {"a": {"vertebra": 0.90, "disc": 0.80, "levels_found": 1.0}, "b": {"vertebra": 0.5}}
    baseline = {"a": {"vertebra": 0.91, "disc": 0.7995, "canal": 0.3, "levels_found": 0.5}}
    text = format_differences(results, baseline)
    assert "| a | -0.0100 | +0.0005 |  | +0.5000 |" in text  # canal only in the baseline, b only in this run
    assert "| b |" not in text and text.endswith("largest class Dice difference: 0.0100")


def test_t2_slice_sets_by_canal_pixels(tmp_path):
    t2 = tmp_path / "spider-slices" / "t2"
    t2.mkdir(parents=True)
    (t2 / "overview.csv").write_text("name,canal_px\na,0\nb,55\nc,999\nd,1000\ne,6400\n")
    sets = validation_sets(tmp_path)
    assert [it.name for it in sets["t2 slices, all"]] == ["a", "b", "c", "d", "e"]
    assert [it.name for it in sets["t2 slices, with canal"]] == ["b", "c", "d", "e"]
    assert [it.name for it in sets["t2 slices, canal >= 1000 px"]] == ["d", "e"]
    assert set(sets) == {"t2 slices, all", "t2 slices, with canal", "t2 slices, canal >= 1000 px"}  # other folders missing


def test_synthetic_sets_are_fixed_spider_like_grids_shared_by_both_contrasts():
    sets = synthetic_sets(4)
    assert list(sets) == ["synthetic T1 (4)", "synthetic T2 (4)"] and sets == synthetic_sets(4)
    t1, t2 = sets.values()
    assert [(a.size, a.spacing, a.direction, a.seed) for a in t1] == [(b.size, b.spacing, b.direction, b.seed) for b in t2]
    for i, it in enumerate(t1):
        sagittal = 0 if i % 2 == 0 else 2  # LPS, then PIR: the sagittal axis first, then last
        assert 3.3 <= it.spacing[sagittal] <= 4.8 and 13 <= it.size[sagittal] <= 18
        assert all(0.55 <= s <= 0.9 for k, s in enumerate(it.spacing) if k != sagittal)


def test_a_synthetic_item_loads_canonically():
    from algorithm.labels import to_classes
    from spider_tools.samples import PIR

    volume, labels, spacing = SyntheticItem("x", "t1", 3, (64, 72, 6), (1.0, 1.0, 4.0), PIR).load()
    assert volume.shape == labels.shape == (6, 72, 64) and spacing == (4.0, 1.0, 1.0)
    assert set(np.unique(to_classes(labels)).tolist()) == {0, 1, 2, 3}  # vertebrae, discs and canal


def test_pooled_dice_weighs_each_case_by_its_size():
    from train.score import summarize

    ref = np.zeros((1, 20, 20), np.int32)
    ref[0, :10, :10] = 100  # a big canal, found exactly
    big = score_case(ref, ref.copy(), ("canal",))
    sliver = np.zeros_like(ref)
    sliver[0, 0, :2] = 100  # a 2-pixel sliver, missed
    missed = score_case(sliver, np.zeros_like(ref), ("canal",))
    s = summarize([big, missed])
    assert s["canal_mean"] == pytest.approx(0.5)  # the sliver weighs a whole case in the mean...
    assert s["canal"] == pytest.approx(2 * 100 / (200 + 2))  # ...and 2 pixels in the pooled Dice
    assert s["cases"] == 2 and "vertebra" not in s


def test_thicken_averages_contiguous_slabs_labelled_by_their_central_slice():
    from train.score import thicken

    volume = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 2, 3), np.float32)
    labels = np.arange(10, dtype=np.int16)[:, None, None] * np.ones((10, 2, 3), np.int16)
    image, classes, spacing = thicken(volume, labels, (0.9, 0.5, 0.6), 4.4)  # 5 slices of 0.9 mm a slab
    assert image.shape == classes.shape == (2, 2, 3) and spacing == pytest.approx((4.5, 0.5, 0.6))
    assert image[:, 0, 0].tolist() == [2.0, 7.0] and classes[:, 0, 0].tolist() == [2, 7]


def test_selection_sets_without_real_data_are_the_synthetic_subsets(tmp_path):
    from train.score import SELECTION_SYNTHETIC, selection_sets, selection_score

    sets = selection_sets(tmp_path)
    assert list(sets) == [f"synthetic T1 ({SELECTION_SYNTHETIC} of 24)", f"synthetic T2 ({SELECTION_SYNTHETIC} of 24)"]
    assert [it.seed for it in sets[list(sets)[0]]] == [it.seed for it in synthetic_sets()["synthetic T1 (24)"][:SELECTION_SYNTHETIC]]
    assert selection_score({"a": {"vertebra": 0.9, "disc": 0.7}, "b": {"vertebra": 0.5}}) == pytest.approx((0.8 + 0.5) / 2)


def test_fast_intensity_augmentation_equals_the_dense_formulation():
    import torch
    import torch.nn.functional as F

    from train.augment import _gaussian_blur, _where

    x = torch.randn(3, 3, 20, 24)
    sigma, radius = 0.8, 2
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    dense = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    dense = F.conv2d(F.pad(dense, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    assert torch.allclose(_gaussian_blur(x, sigma), dense, atol=1e-5)
    on = torch.tensor([True, False, True])
    out = _where(on, lambda s, i: s + i[:, None, None, None], x)
    assert torch.equal(out[1], x[1]) and torch.equal(out[0], x[0]) and torch.equal(out[2], x[2] + 2)


def test_disc_rings_keep_a_core_inside_rings_along_the_border():
    tissues = np.zeros((2, 30, 60), np.uint8)
    tissues[:, 10:20, 5:55] = synth.DISC_TISSUE + 3  # a disc 10 pixels tall, 50 long, at 1 mm
    tissues[:, 25:28, 5:55] = synth.VERTEBRA_TISSUE  # not a disc: untouched
    out = synth.disc_rings(tissues, spacing_mm=1.0)
    assert (out[:, 25:28, 5:55] == synth.VERTEBRA_TISSUE).all() and (out[tissues == 0] == 0).all()
    row = out[0, 15, 5:55]
    assert row[0] == row[-1] == synth.OUTER_RING + 3  # the front and back edge
    assert row[3] == row[-4] == synth.INNER_RING + 3  # 4 mm in
    assert (row[10:40] == synth.DISC_TISSUE + 3).all()  # the core
    assert out[0, 10, 30] == synth.INNER_RING + 3  # at the endplate, 1 row = 3 mm: the inner ring only
    assert set(np.unique(out[tissues > 0])) == {synth.VERTEBRA_TISSUE, synth.DISC_TISSUE + 3, synth.INNER_RING + 3, synth.OUTER_RING + 3}


def test_disc_ring_intensities_lie_between_core_and_annulus():
    rng = np.random.default_rng(1)
    for _ in range(50):
        lut = synth.tissue_intensities(rng)
        core, inner, outer = (lut[first : first + synth.INSTANCE_TISSUES] for first in (synth.DISC_TISSUE, synth.INNER_RING, synth.OUTER_RING))
        assert len(lut) == synth.N_TISSUES
        assert (np.abs(inner - core) <= np.abs(outer - core) + 1e-6).all()  # the inner ring is nearer the core
        assert len(np.unique(np.sign(np.round(outer - core, 6)))) <= 2  # one annulus level: all rings move the same way
