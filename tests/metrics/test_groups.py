"""Worst-group accuracy: groups are class x (the class's tied cue present/absent), on hand-made arrays and through
the score table from real heatmap and prepared files."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_rationality.artefacts import write_heatmap_shard, write_prepared_shard
from vlm_rationality.metrics.groups import cue_present, worst_group
from vlm_rationality.metrics.score import score_table


def test_the_worst_group_is_the_class_without_its_cue_when_the_model_follows_the_cue():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    backgrounds = np.array([5, 5, 2, 2, 6, 6, 6, 1, 1, 1])
    present = cue_present(labels, backgrounds, tied=[5, 6])
    assert present.tolist() == [True, True, False, False, True, True, True, False, False, False]
    correct = np.array(
        [1, 1, 1, 0, 1, 1, 1, 0, 0, 1], bool
    )  # groups: (0, cue) 1.0, (0, no cue) 0.5, (1, cue) 1.0, (1, no cue) 1/3
    worst = worst_group(correct, labels, present)
    assert worst == {
        "acc_worst_group": pytest.approx(1 / 3),
        "worst_group_class": 1,
        "worst_group_cue_present": False,
        "n_worst_group": 3,
        "n_groups": 4,
    }
    assert worst_group(correct[:4], labels[:4], present[:4])["acc_worst_group"] == 0.5
    tie = worst_group(np.array([0, 0], bool), np.array([0, 1]), np.array([True, False]))
    assert (tie["worst_group_class"], tie["worst_group_cue_present"], tie["n_groups"]) == (
        0,
        True,
        2,
    )  # the first of equals


def test_the_score_table_reads_each_sample_background_from_the_prepared_split(tmp_path):
    n = 12
    ids = [f"test-{k:06d}" for k in range(n)]
    labels = np.array([0, 1] * 6)
    backgrounds = [0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0]  # cue present for the first six, absent for the rest
    preds = np.array([0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1])  # right with the cue; without it: class 0 1/3, class 1 2/3
    prepared = tmp_path / "shard-0000.parquet"
    write_prepared_shard(
        prepared,
        sample_ids=ids,
        labels=labels,
        images=np.zeros((n, 4, 4, 3), np.uint8),
        masks=np.ones((n, 4, 4), bool),
        sources=["synthetic"] * n,
        config_hash="x",
        extra={"background": backgrounds},
    )
    heatmaps = tmp_path / "shards-0000-0000.parquet"
    order = np.arange(n)[::-1]  # the heatmap rows in another order than the prepared rows: joined by sample_id
    write_heatmap_shard(
        heatmaps,
        sample_ids=[ids[i] for i in order],
        labels=labels[order],
        preds=preds[order],
        logits=np.zeros((n, 2)),
        heatmaps=np.ones((n, 4)),
        rma=np.full(n, 0.9, np.float32),
        rma_status=np.zeros(n, int),
        explained_class=labels[order],
        cue_rma=np.full(n, np.nan, np.float32),
        keys={"dataset": "d", "shift": "clean", "model": "m", "method": "zs", "heatmap_method": "chefer"},
        config_hash="x",
        meta={"grid_size": [2, 2]},
    )
    row = score_table([heatmaps], 0.5, 10, 0, groups={"d": {"tied": [0, 1], "shards": [str(prepared)]}}).to_pylist()[0]
    assert row["accuracy"] == pytest.approx(9 / 12)
    assert (row["acc_worst_group"], row["worst_group_class"], row["worst_group_cue_present"], row["n_groups"]) == (
        pytest.approx(1 / 3),
        0,
        False,
        4,
    )
    plain = score_table([heatmaps], 0.5, 10, 0).to_pylist()[0]  # a dataset with no tied cue: no groups
    assert plain["acc_worst_group"] is None and plain["n_groups"] == 0


def test_sticker_effect_is_ravls_epsilons_by_hand():
    from vlm_rationality.metrics.groups import sticker_effect

    labels = np.array([0] * 8 + [1] * 8 + [2] * 4)
    present = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 2 + [1, 1, 0, 0], bool)
    correct = np.array(
        [1, 1, 1, 1, 1, 1, 0, 0]  # the tied class: 4/4 with the sticker, 2/4 without
        + [1, 0, 0, 0, 1, 1, 1, 0]  # class 1: 1/4 with it, 3/4 without
        + [1, 1, 1, 1],  # class 2: all right either way
        bool,
    )
    assert sticker_effect(correct, labels, present, 0) == {
        "epsilon_1": pytest.approx(0.5),
        "epsilon_2": pytest.approx(0.5),
        "epsilon_2_class": 1,
    }
    alone = sticker_effect(correct[:8], labels[:8], present[:8], 0)  # no other class: ε2 undefined
    assert np.isnan(alone["epsilon_2"]) and alone["epsilon_2_class"] is None


def test_region_accuracy_is_the_object_alone_overall_and_in_its_worst_group_by_hand():
    from vlm_rationality.metrics.groups import NO_REGION, region_accuracy

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    present = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    object_pred = np.array([0, 0, 0, 1, 1, -1, 1, 1])  # (0, absent) 1/2; (1, present) 1/2, one with no prediction
    assert region_accuracy(labels, object_pred, present) == {
        "region_accuracy": pytest.approx(6 / 8),
        "region_acc_worst_group": pytest.approx(0.5),
    }
    assert region_accuracy(labels[:0], object_pred[:0], present[:0]) == NO_REGION


def test_cramers_v_by_hand():
    from vlm_rationality.metrics.groups import cramers_v

    # classes 0/1 x cue absent/present: [[30, 10], [10, 30]]; phi = (30·30 − 10·10) / √(40·40·40·40) = 0.5
    labels = np.repeat([0, 0, 1, 1], [30, 10, 10, 30])
    present = np.repeat([False, True, False, True], [30, 10, 10, 30])
    assert cramers_v(labels, present) == pytest.approx(0.5)
    assert cramers_v(labels, labels == 1) == pytest.approx(1.0)
    assert np.isnan(cramers_v(labels, np.zeros(80, bool)))  # a cue never present ties nothing


def test_cue_reliance_by_hand():
    from vlm_rationality.metrics.cue import cue_reliance

    correct = np.array([True, True, False, True, True])
    rma = np.array([0.8, 0.3, 0.5, np.nan, 0.4])
    cue = np.array([0.1, 0.6, np.nan, 0.9, 0.4])  # no cue in image 2; image 3's map undefined on the object
    found = cue_reliance(correct, rma, cue, iterations=200, seed=0)
    assert found["cue_mass"] == pytest.approx((0.1 + 0.6 + 0.9 + 0.4) / 4) and found["n_cue"] == 4
    # right with both defined: images 0, 1, 4; only image 1 puts more on the cue (a tie is not more)
    assert found["cue_over_object"] == pytest.approx(1 / 3) and found["n_cue_right"] == 3
    assert found["cue_mass_ci_low"] <= found["cue_mass"] <= found["cue_mass_ci_high"]
    assert found == cue_reliance(correct, rma, cue, iterations=200, seed=0)  # seeded
    none = cue_reliance(correct, rma, np.full(5, np.nan), iterations=10)
    assert np.isnan(none["cue_mass"]) and none["n_cue"] == 0 and np.isnan(none["cue_over_object_ci_high"])
