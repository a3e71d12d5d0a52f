"""Counterfactual twins and the true rationale: what the twins change and keep, hand-built classifiers whose
grounding is known, true quadrants counted by hand, mask tolerance, and the validity agreement measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import maximum_filter
from scipy.stats import rankdata

from tests import fixtures
from tests.data.test_datasets import CONFIGS
from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.data import build_dataset
from vlm_rationality.data.prepare import prepare_shard, write_item_index
from vlm_rationality.data.synthetic import STICKER_COLOURS, TEXTURE_TONES, make_sample
from vlm_rationality.data.twins import Pool, object_only
from vlm_rationality.masks import mask_variant
from vlm_rationality.metrics.agreement import auroc, cohen_kappa
from vlm_rationality.metrics.grounding import cue_grounded, grounding, object_grounded
from vlm_rationality.predict.twins import twin_predictions

SYNTHETIC = {
    "adapter": "synthetic",
    "image_size": 32,
    "shard_size": 64,
    "num_classes": 8,
    "num_textures": 8,
    "max_rotation": 20,
    "jitter": 0.3,
    "noise": 0.0,
    "splits": {"test": {"size": 64, "rho": 0.9}},
}


def synthetic_pool(config=SYNTHETIC, split="test"):
    dataset = build_dataset(config)
    samples = list(dataset.samples(split, 0, dataset.split_size(split)))
    return dataset, Pool(
        [s.sample_id for s in samples],
        np.array([s.label for s in samples]),
        np.stack([s.image for s in samples]),
        np.stack([s.mask for s in samples]),
    )


def test_synthetic_twins_keep_the_object_bit_for_bit_and_change_only_the_background():
    dataset, pool = synthetic_pool()
    twins = dataset.twins("test", pool.sample_ids, pool.labels, pool.images, pool.masks, pool, 8, 0)
    assert twins.images.shape == (64, 8, 32, 32, 3) and twins.alone.shape == (64, 32, 32, 3)
    for b in range(64):
        mask, image = pool.masks[b], pool.images[b]
        assert mask.any()
        for k in range(8):
            assert np.array_equal(twins.images[b, k][mask], image[mask])  # the object's pixels, bit for bit
            assert (twins.images[b, k][~mask] != image[~mask]).any()  # a background drawn afresh
        # the twin on texture k shows texture k's tones (noise is 0: every pixel is one of two jittered tones)
        off = twins.images[b, :, ~mask].astype(float).mean(axis=0)  # [8, 3]
        nearest = [int(np.argmin(np.abs(TEXTURE_TONES[:8].mean(axis=1) - colour).sum(axis=1))) for colour in off]
        assert sum(n == k for k, n in enumerate(nearest)) >= 6
        # the background alone: every pixel off the object as it was, the object gone, its mask empty
        assert np.array_equal(twins.alone[b][~mask], image[~mask])
        assert (twins.alone[b][mask] != image[mask]).any()
        assert not twins.alone_masks[b].any()
    # Mixed-Same: exactly the texture the class is tied to
    assert twins.same_class.sum(axis=1).tolist() == [1] * 64
    assert np.array_equal(twins.same_class.argmax(axis=1), pool.labels % 8)
    again = dataset.twins("test", pool.sample_ids[3:5], pool.labels[3:5], pool.images[3:5], pool.masks[3:5], pool, 8, 0)
    assert np.array_equal(again.images, twins.images[3:5])  # a sample's twins do not depend on its batch
    # the class each twin's cue pulls towards: texture k is tied to class k
    assert np.array_equal(twins.cue_class, np.broadcast_to(np.arange(8), (64, 8)))


def test_the_object_alone_keeps_the_object_and_paints_the_background_its_mean_colour():
    _, pool = synthetic_pool()
    alone = object_only(pool.images, pool.masks)
    for b in range(8):
        mask, image = pool.masks[b], pool.images[b]
        assert np.array_equal(alone[b][mask], image[mask])
        assert np.array_equal(
            alone[b][~mask], np.broadcast_to(np.rint(image[~mask].mean(axis=0)), (int((~mask).sum()), 3))
        )


STICKER = {**SYNTHETIC, "cue": "sticker", "sticker_class": 0, "sticker_rate": 0.5}


def test_sticker_twins_keep_object_and_sticker_on_every_texture_and_toggle_the_sticker_alone():
    dataset, pool = synthetic_pool(STICKER)
    twins = dataset.twins("test", pool.sample_ids, pool.labels, pool.images, pool.masks, pool, 8, 0)
    assert twins.images.shape == (64, 9, 32, 32, 3)  # 8 textures and the sticker toggled
    carried = []
    for b in range(64):
        original = make_sample(dataset.spec, "test", b, 0.9)
        mask, cue, image = pool.masks[b], original.extra["cue_mask"], pool.images[b]
        carried.append(cue.any())
        for k in range(8):  # object and sticker kept bit for bit, the background drawn afresh
            assert np.array_equal(twins.images[b, k][mask | cue], image[mask | cue])
            assert (twins.images[b, k][~(mask | cue)] != image[~(mask | cue)]).any()
        toggled = make_sample(dataset.spec, "test", b, 0.9, sticker=not cue.any())
        other = toggled.extra["cue_mask"]
        assert cue.any() != other.any()  # removed where it was, added where it was not
        changed = (twins.images[b, 8] != image).any(axis=-1)
        assert np.array_equal(twins.images[b, 8], toggled.image) and not (changed & ~(cue | other)).any()
        assert changed[cue | other].mean() > 0.5  # the sticker's own pixels (a stripe may match the background)
        assert not (maximum_filter(other, size=3) & mask).any()  # an added sticker keeps its margin from the object
    carried = np.array(carried)
    assert 0 < carried.mean() < 1
    # the twin shows the cue tied to the sample's class: the sticker, on a sample of the sticker's class
    expected = np.concatenate([np.repeat(carried[:, None], 8, axis=1), ~carried[:, None]], axis=1)
    assert np.array_equal(twins.same_class, expected & (pool.labels == 0)[:, None])
    assert np.array_equal(twins.cue_class, np.where(expected, 0, -1))  # the sticker pulls towards its class


def sticker_reader(images: torch.Tensor) -> torch.Tensor:
    """Reads only the sticker: class 0 where its pink shows, class 1 where it does not."""
    pink = (images == torch.from_numpy(STICKER_COLOURS[0]).to(images.dtype)).all(dim=-1).flatten(1).any(dim=1)
    return torch.nn.functional.one_hot(torch.where(pink, 0, 1), 8).float()


def test_a_classifier_reading_only_the_sticker_is_never_object_grounded(tmp_path):
    found, row = _truth(sticker_reader, tmp_path, STICKER)
    assert row["n_object_grounded"] == 0  # toggling the sticker always flips it
    assert (found["twin_pred"][:, :8] == found["pred"][:, None]).all()  # backgrounds alone never do
    assert row["bg_gap"] == 1.0  # on the sticker's class, right with the sticker and wrong without it


def test_a_sample_made_without_its_object_has_an_empty_mask_and_the_same_background():
    spec = build_dataset(SYNTHETIC).spec
    with_object, without = make_sample(spec, "test", 7, 0.9), make_sample(spec, "test", 7, 0.9, draw_object=False)
    assert with_object.mask.any() and not without.mask.any()
    assert np.array_equal(with_object.image[~with_object.mask], without.image[~with_object.mask])
    assert (with_object.label, with_object.extra) == (without.label, without.extra)


@pytest.mark.parametrize("name", ["cub", "caltech101", "imagenet"])
def test_real_twins_keep_the_source_foreground_and_take_other_images_backgrounds(name, tmp_path):
    fixture = getattr(fixtures, name)(tmp_path / name)
    config = {**CONFIGS[name](fixture.root), "shard_size": 100}
    write_item_index(config, "test", tmp_path / "items.parquet", "h")
    prepare_shard(config, "test", 0, tmp_path / "items.parquet", tmp_path / "shard.parquet", "h")
    prepared = PreparedShard(tmp_path / "shard.parquet").read()
    pool = Pool(prepared["sample_id"], prepared["label"], prepared["image"], prepared["mask"])
    n = len(pool.sample_ids)
    assert n >= 4
    dataset = build_dataset(config)
    twins = dataset.twins("test", pool.sample_ids, pool.labels, pool.images, pool.masks, pool, 2, 0)
    assert twins.images.shape == (n, 2, *pool.images.shape[1:])
    for b in range(n):
        mask = pool.masks[b]
        for k in range(2):
            assert np.array_equal(twins.images[b, k][mask], pool.images[b][mask])
            assert not np.array_equal(twins.images[b, k], pool.images[b])
        # its own background with the object's region filled: unchanged off the object
        assert np.array_equal(twins.alone[b][~mask], pool.images[b][~mask])
        own_class = (pool.labels == pool.labels[b]).sum() > 1
        assert twins.same_class[b, 0] == own_class  # Mixed-Same first where the pool has another of its class
        assert not twins.same_class[b, 1:].any() or (pool.labels != pool.labels[b]).sum() < 1
        assert (twins.same_class[b] == (twins.cue_class[b] == pool.labels[b])).all()  # a background's cue: its class
    assert not twins.alone_masks.any()
    seeded = dataset.twins("test", pool.sample_ids, pool.labels, pool.images, pool.masks, pool, 2, 0)
    assert np.array_equal(seeded.images, twins.images)
    with pytest.raises(ValueError, match=r"twins\.backgrounds is 50, but the job's shards hold"):
        dataset.twins("test", pool.sample_ids[:1], pool.labels[:1], pool.images[:1], pool.masks[:1], pool, 50, 0)


def _saturated(images: torch.Tensor) -> torch.Tensor:
    """Object pixels: every object colour reaches 190 in a channel, every background tone stays below 160."""
    return images.amax(dim=-1) >= 185


def object_reader(images: torch.Tensor) -> torch.Tensor:
    """Reads only the object: the class is its pixel count modulo 8."""
    counts = _saturated(images).flatten(1).sum(dim=1)
    return torch.nn.functional.one_hot(counts % 8, 8).float()


def background_reader(images: torch.Tensor) -> torch.Tensor:
    """Reads only the background: the class tied to the texture whose tones are nearest its mean colour."""
    off = (~_saturated(images)).unsqueeze(-1)
    mean = (images.float() * off).flatten(1, 2).sum(1) / off.flatten(1, 2).sum(1)
    tones = torch.from_numpy(TEXTURE_TONES[:8].mean(axis=1))
    return -(mean[:, None, :] - tones[None]).abs().sum(-1)  # texture t is tied to class t (8 classes, 8 textures)


def _truth(classify, tmp_path, config=SYNTHETIC):
    from vlm_rationality.artefacts import write_prepared_shard

    dataset, pool = synthetic_pool(config)
    path = tmp_path / "shard-0000.parquet"
    write_prepared_shard(
        path,
        sample_ids=pool.sample_ids,
        labels=pool.labels,
        images=pool.images,
        masks=pool.masks,
        sources=["synthetic"] * len(pool.labels),
        config_hash="h",
    )
    found = twin_predictions(classify, dataset, "test", [str(path)], 8, 0, batch_size=100)
    return found, grounding(
        found["label"], found["pred"], found["twin_pred"], found["same_class"], found["alone_pred"], iterations=0
    )


def test_a_classifier_reading_only_the_background_is_never_object_grounded(tmp_path):
    found, row = _truth(background_reader, tmp_path)
    right = found["pred"] == found["label"]
    assert right.mean() > 0.5  # the test split ties 90% of backgrounds to the class, so it is often right
    assert row["pt_true"] == 0.0 and row["n_object_grounded"] == 0
    assert row["bg_gap"] > 0.5  # right on its class's own background, wrong on the others


def test_a_classifier_reading_only_the_object_is_grounded_on_every_sample(tmp_path):
    found, row = _truth(object_reader, tmp_path)
    assert row["n_object_grounded"] == len(found["label"]) == 64
    assert (found["twin_pred"] == found["pred"][:, None]).all()
    assert (found["alone_pred"] == 0).all()  # no object pixel left: count 0
    right = found["pred"] == found["label"]
    assert right.any() and row["pt_true"] == 1.0 and row["ir_true"] == pytest.approx(right.mean())
    assert row["bg_gap"] == 0.0


def test_true_quadrants_counted_by_hand():
    label = np.array([0, 1, 2, 0, 1, 2, 0])
    pred = np.array([0, 1, 0, 0, 2, 2, -1])  # right, right, wrong, right, wrong, right, no prediction
    twin_pred = np.array([[0, 0, 0], [1, 2, 1], [0, 0, 0], [1, 1, 1], [2, 2, 1], [2, 2, 2], [0, 0, 0]])
    same_class = np.array([[1, 0, 0]] * 7, bool)
    alone = np.array([0, 0, 0, 1, 1, 2, 0])
    grounded = object_grounded(pred, twin_pred)
    assert grounded.tolist() == [True, False, True, False, False, True, False]
    # RR* = {0, 5}, RW* = {1, 3}, WR* = {2}, WW* = {4}; sample 6 made no prediction and is left out
    row = grounding(label, pred, twin_pred, same_class, alone, iterations=200)
    assert row["pt_true"] == pytest.approx(2 / 4) and row["ir_true"] == pytest.approx(2 / 3)
    assert row["pt_true_ci_low"] <= 0.5 <= row["pt_true_ci_high"]
    assert row["n_object_grounded"] == 3
    assert row["acc_background_alone"] == pytest.approx(3 / 6)  # samples 0, 4 (1 == 1) and 5
    # own-class twins (column 0): 0 1 0 1 2 2 against the labels 0 1 2 0 1 2 -> 3 of 6 right;
    # the others: 0 0 | 2 1 | 0 0 | 1 1 | 2 1 | 2 2 against the labels -> 2 + 1 + 0 + 0 + 1 + 2 = 6 of 12
    assert row["bg_gap"] == pytest.approx(3 / 6 - 6 / 12)
    relaxed = object_grounded(pred, twin_pred, agreement=2 / 3)
    assert relaxed.tolist() == [True, True, True, False, True, True, False]
    # a cue tied to one class: only samples 0 and 3 have a twin showing it; the gap is read within them alone
    # (own: 0, 1 against 0, 0 -> 1 of 2; others: 0 0 | 1 1 -> 2 of 4), not against the other samples' twins
    one_class = same_class & (label == 0)[:, None]
    assert grounding(label, pred, twin_pred, one_class, alone, iterations=0)["bg_gap"] == pytest.approx(1 / 2 - 2 / 4)
    assert row["pt_true_cue"] is None  # no cue classes given: no PT*_cue
    # the cue of twin k pulls towards class k. Sample 1 (right, 1 -> twins 1 2 1) flips on twin 1 to class 2, not to
    # its cue's class 1: robustness, not the cue, so it is cue-grounded; sample 3 (right, 0 -> 1 1 1) goes to twin 1's
    # cue class 1: pulled. RR = {0, 1, 5}, RW = {3}, WR = {2, 4} (their twins go nowhere a cue pulls)
    cue_class = np.array([[0, 1, 2]] * 7)
    assert cue_grounded(pred, twin_pred, cue_class).tolist() == [True, True, True, False, True, True, False]
    cue = grounding(label, pred, twin_pred, same_class, alone, iterations=200, cue_class=cue_class)
    assert cue["pt_true_cue"] == pytest.approx(3 / 4) and cue["ir_true_cue"] == pytest.approx(3 / 5)
    assert cue["pt_true"] == row["pt_true"] and cue["pt_true_cue_ci_low"] <= 0.75 <= cue["pt_true_cue_ci_high"]


def mann_whitney_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The oracle: P(positive outscores negative), ties a half, from the ranks."""
    ranks = rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def kappa_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    observed = (a == b).mean()
    expected = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
    return (observed - expected) / (1 - expected)


def test_agreement_measures_equal_the_hand_formulas():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = np.round(rng.random(50), 1)  # ties
        positive, other = rng.random(50) < 0.4, rng.random(50) < 0.5
        assert auroc(scores, positive) == pytest.approx(mann_whitney_auroc(scores, positive))
        assert cohen_kappa(other, positive) == pytest.approx(kappa_by_hand(other, positive))
    assert auroc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert math.isnan(auroc(np.array([0.1, 0.9]), np.array([True, True])))
    assert auroc(np.array([np.nan, 0.2, 0.8]), np.array([True, False, True])) == 1.0  # NaN left out
    ones, zeros = np.ones(4, bool), np.zeros(4, bool)
    assert math.isnan(cohen_kappa(ones, ones)) and math.isnan(cohen_kappa(zeros, zeros))  # chance agreement 1
    assert cohen_kappa(ones, zeros) == 0.0 and math.isnan(cohen_kappa(zeros[:0], zeros[:0]))


def test_mask_variants_by_hand_and_recorded_by_prepare(tmp_path):
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 4, 3] = mask[0, 2, 5] = True  # their 3 x 3 squares share the pixel (3, 4)
    dilated = mask_variant(mask, "dilate-1")[0]
    assert dilated.sum() == 9 + 9 - 1 and dilated[3:6, 2:5].all() and dilated[1:4, 4:7].all()
    box = mask_variant(mask, "box")[0]
    assert box.sum() == 9 and box[2:5, 3:6].all()
    assert np.array_equal(mask_variant(mask, "exact"), mask)
    rng = np.random.default_rng(0)
    for pixels in (1, 2, 4):  # against scipy's square maximum filter
        masks = rng.random((3, 20, 17)) < 0.03
        assert np.array_equal(
            mask_variant(masks, f"dilate-{pixels}"),
            maximum_filter(masks, size=(1, 2 * pixels + 1, 2 * pixels + 1), mode="constant", cval=False),
        )
    empty = np.zeros((2, 5, 5), bool)
    assert not any(mask_variant(empty, v).any() for v in ("box", "dilate-3"))
    with pytest.raises(ValueError, match="unknown mask variant 'dilate-0'"):
        mask_variant(mask, "dilate-0")

    config = {**SYNTHETIC, "mask": "box"}
    write_item_index(config, "test", tmp_path / "items.parquet", "h")
    prepare_shard(config, "test", 0, tmp_path / "items.parquet", tmp_path / "box.parquet", "h")
    prepare_shard(SYNTHETIC, "test", 0, tmp_path / "items.parquet", tmp_path / "exact.parquet", "h")
    assert PreparedShard(tmp_path / "box.parquet").meta["mask"] == "box"
    assert "mask" not in PreparedShard(tmp_path / "exact.parquet").meta
    exact, boxed = PreparedShard(tmp_path / "exact.parquet").read(), PreparedShard(tmp_path / "box.parquet").read()
    assert np.array_equal(boxed["mask"], mask_variant(exact["mask"], "box"))
    assert np.array_equal(boxed["image"], exact["image"])
