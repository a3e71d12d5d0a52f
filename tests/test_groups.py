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
