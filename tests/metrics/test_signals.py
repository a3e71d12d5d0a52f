"""Rationale signals and the analyses that judge them: known answers per signal (none / half / all of the mask),
Quantus's localisation metrics as an independent reference, and the reviewer's controls built as cases whose answer
is known: a Simpson case (pooled AUROC below 0.5, every within-class AUROC 1) and a signal that only restates the
margin (no gain beyond confidence)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from vlm_rationality.metrics.agreement import auroc, stratified_weights, weighted_auroc, within_class_auroc
from vlm_rationality.metrics.beyond_confidence import ConfidenceControl
from vlm_rationality.metrics.grounding import cue_grounded, grounded_beyond
from vlm_rationality.metrics.rma import minmax_normalize, upsample
from vlm_rationality.metrics.signals import SIGNALS, Evidence
from vlm_rationality.metrics.validity import discrimination


def evidence(relevance: np.ndarray, logits=None, pred=None, object_pred=None) -> Evidence:
    n = len(relevance)
    logits = np.zeros((n, 3), np.float32) if logits is None else np.asarray(logits, np.float32)
    pred = np.zeros(n, np.int64) if pred is None else np.asarray(pred)
    return Evidence(
        torch.as_tensor(np.asarray(relevance, np.float32)),
        logits,
        pred,
        pred.copy() if object_pred is None else np.asarray(object_pred),
    )


def test_every_signal_is_registered_with_what_it_reads():
    assert set(SIGNALS) >= {
        "rma",
        "mass_lift",
        "token_rma",
        "token_rma_raw",
        "rank_accuracy",
        "pointing_game",
        "margin",
        "max_softmax",
        "object_retention",
        "mask_area",
    }


def test_localisation_signals_give_none_half_and_all_of_the_mask():
    # a 2x2 patch grid on an 8x8 image: heat only in the left column of patches
    grid = np.array([[[1.0, 0.0], [1.0, 0.0]]] * 3)
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :, 4:] = True  # the right half: none of the patch-grid heat
    masks[1, :4, :] = True  # the top half: half of it
    masks[2, :, :4] = True  # the left half: all of it
    ev = evidence(grid)
    assert SIGNALS.get("token_rma")(ev, masks).tolist() == [0.0, 0.5, 1.0]
    assert SIGNALS.get("token_rma_raw")(ev, masks).tolist() == [0.0, 0.5, 1.0]
    assert SIGNALS.get("mass_lift")(ev, np.ones_like(masks)).tolist() == pytest.approx([1.0] * 3)  # whole image
    pointing = SIGNALS.get("pointing_game")(ev, masks)
    assert pointing[0] == 0.0 and pointing[2] == 1.0
    rank = SIGNALS.get("rank_accuracy")(ev, masks)
    assert rank[0] == 0.0 and rank[2] == 1.0
    rma = SIGNALS.get("rma")(ev, masks)
    assert rma[0] < 0.2 and rma[2] > 0.8 and rma[1] == pytest.approx(0.5)
    lift = SIGNALS.get("mass_lift")(ev, masks)
    assert lift.tolist() == pytest.approx((rma / 0.5).tolist())
    masks[0] = False  # no object: the area baseline is undefined, not 0
    masks[1, :, :] = True
    assert np.isnan(SIGNALS.get("mask_area")(ev, masks)[0])
    assert SIGNALS.get("mask_area")(ev, masks)[1:].tolist() == [1.0, 0.5]


def test_signals_are_undefined_on_constant_maps_and_empty_masks():
    grid = np.array([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4] = True  # constant map
    for name in ("rma", "mass_lift", "token_rma", "token_rma_raw", "rank_accuracy", "pointing_game"):
        values = SIGNALS.get(name)(evidence(grid), masks)
        assert np.isnan(values).all(), name  # sample 1 has an empty mask


def test_confidence_and_retention_by_hand():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0], [np.inf, 0.0, 0.0]])
    ev = evidence(np.ones((3, 2, 2)), logits, pred=np.array([0, 1, -1]), object_pred=np.array([0, 2, 0]))
    margin = SIGNALS.get("margin")(ev, None)
    assert margin[:2].tolist() == [2.0, 0.0] and math.isnan(margin[2])
    softmax = SIGNALS.get("max_softmax")(ev, None)
    assert softmax[0] == pytest.approx(math.exp(3) / (math.exp(3) + math.exp(1) + 1)) and softmax[1] == pytest.approx(
        1 / 3
    )
    retention = SIGNALS.get("object_retention")(ev, None)
    assert retention[:2].tolist() == [1.0, 0.0] and math.isnan(retention[2])


@pytest.mark.parametrize("seed", range(3))
def test_localisation_signals_agree_with_quantus(seed):
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(seed)
    grid = rng.random((16, 8, 8)).astype(np.float32)
    masks = np.zeros((16, 64, 64), bool)
    for b in range(16):
        top, left = rng.integers(0, 40, 2)
        masks[b, top : top + rng.integers(8, 24), left : left + rng.integers(8, 24)] = True
    assert_quantus_parity(quantus, grid, masks)


def assert_quantus_parity(quantus, grid: np.ndarray, masks: np.ndarray) -> None:
    """Our RMA, Relevance Rank Accuracy and pointing game against Quantus's on the same map as RMA reads it
    (bilinear to the input, min-max normalised; Quantus told not to normalise again)."""
    heat = minmax_normalize(upsample(torch.from_numpy(grid), masks.shape[-2:]))[0].numpy()[:, None]
    x, y, s = np.zeros((len(grid), 3, *masks.shape[-2:])), np.zeros(len(grid), int), masks[:, None].astype(float)
    ev = evidence(grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, metric in (
            ("rma", quantus.RelevanceMassAccuracy),
            ("rank_accuracy", quantus.RelevanceRankAccuracy),
            ("pointing_game", quantus.PointingGame),
        ):
            reference = metric(normalise=False, abs=False, disable_warnings=True, display_progressbar=False)(
                model=None, x_batch=x, y_batch=y, a_batch=heat, s_batch=s, channel_first=True
            )
            assert SIGNALS.get(name)(ev, masks) == pytest.approx(np.asarray(reference, np.float64), abs=1e-6), name


def test_weighted_auroc_is_auroc_on_the_resampled_data():
    rng = np.random.default_rng(0)
    scores, positive = np.round(rng.random(40), 1), rng.random(40) < 0.4  # ties
    assert weighted_auroc(scores, positive, np.ones((40, 1)))[0] == pytest.approx(auroc(scores, positive))
    counts = rng.multinomial(40, np.full(40, 1 / 40), 5)
    for row, w in zip(weighted_auroc(scores, positive, counts.T), counts):
        repeated = np.repeat(np.arange(40), w)
        assert row == pytest.approx(roc_auc_score(positive[repeated], scores[repeated]))
    weights = stratified_weights(np.array([0] * 10 + [1] * 30), 50)
    assert (weights[:10].sum(axis=0) == 10).all() and (weights[10:].sum(axis=0) == 30).all()


def test_simpson_case_pooled_below_half_but_every_class_perfect():
    # two classes: in each, the grounded samples score higher; but the class that is mostly grounded has small
    # scores (a small object's RMA) and the mostly ungrounded one large scores
    small = np.array([0.10, 0.11, 0.12, 0.13, 0.05])
    large = np.array([0.60, 0.50, 0.45, 0.44, 0.43])
    scores = np.r_[small, large]
    grounded = np.r_[[True, True, True, True, False], [True, False, False, False, False]]
    classes = np.r_[[0] * 5, [1] * 5]
    assert auroc(scores, grounded) < 0.5
    mean, per_class = within_class_auroc(scores, grounded, classes)
    assert mean[0] == 1.0 and per_class == {0: 1.0, 1: 1.0}


def test_a_class_with_one_outcome_only_is_left_out_of_the_within_class_mean():
    mean, per_class = within_class_auroc(
        np.array([0.1, 0.9, 0.5, 0.6]), np.array([False, True, True, True]), np.array([0, 0, 1, 1])
    )
    assert per_class == {0: 1.0} and mean[0] == 1.0


def confidence_case(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, n)
    margin = rng.normal(size=n)
    evidence_of_grounding = rng.normal(size=n)
    grounded = (margin + evidence_of_grounding + rng.normal(scale=0.5, size=n)) > 0
    return classes, margin, evidence_of_grounding, grounded


def test_a_signal_that_restates_the_margin_gains_nothing_beyond_confidence():
    classes, margin, informative, grounded = confidence_case()
    weights = stratified_weights(classes, 200)
    control = ConfidenceControl(margin, classes, grounded)
    restating = discrimination(2 * margin + 1, grounded, classes, weights, control)
    assert restating["auroc_within"] > 0.7  # on its own it looks like a good signal
    assert restating["auroc_gain_ci_low"] <= 0 <= restating["auroc_gain_ci_high"] and restating["lr_p"] > 0.01
    adding = discrimination(informative, grounded, classes, weights, control)
    assert adding["auroc_gain_ci_low"] > 0.05 and adding["lr_p"] < 1e-6


def test_cue_and_beyond_reference_truths_by_hand():
    pred = np.array([0, 0, 0, 1])
    twin_pred = np.array([[0, 0, 0], [0, 2, 0], [0, 1, 0], [1, 1, 0]])
    cue = np.array([[0, 1, 2]] * 4)  # twin k shows the cue of class k
    # sample 1 goes to class 2 on the twin whose cue is class 1: robustness, not the cue; sample 2 goes to the cue's
    # class 1; sample 3 goes to class 0 on the twin whose cue is class 2: not the cue either
    assert cue_grounded(pred, twin_pred, cue).tolist() == [True, True, False, True]
    reference_pred = np.array([0, 0, 0, 2])
    reference_twins = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0], [2, 2, 1]])
    # sample 1's flip is on a twin ZS flips too; sample 2's is not; sample 3's flip is on a twin ZS also flips
    assert grounded_beyond(pred, twin_pred, reference_pred, reference_twins).tolist() == [True, True, False, True]


PLUGIN = """
import numpy as np

from vlm_rationality.metrics.signals.base import SIGNALS


@SIGNALS.register("centre_heat", reads="heatmap", masks="none", valid_at=0.5)
def centre_heat(evidence, masks):
    grid = evidence.relevance.numpy()
    return grid[:, 1:-1, 1:-1].sum(axis=(1, 2)) / grid.sum(axis=(1, 2))
"""

PROBE = """
import numpy as np, torch
from vlm_rationality.metrics.signals import Evidence
from vlm_rationality.metrics.validity import signal_scores
ev = Evidence(torch.ones(2, 4, 4), np.zeros((2, 3), np.float32), np.zeros(2, int), np.zeros(2, int))
masks = np.zeros((2, 8, 8), bool); masks[:, :4] = True
print(sorted({(name, mask) for name, mask, _ in signal_scores(ev, masks, ["exact", "box"], heatmap=True)}))
scores = dict((name, values) for name, _, values in signal_scores(ev, masks, ["exact"], True))
print([float(v) for v in scores["centre_heat"]])
"""


def test_a_new_signal_is_one_file_the_validity_stage_finds(tmp_path):
    package = Path(__file__).resolve().parents[2] / "src" / "vlm_rationality"
    shutil.copytree(package, tmp_path / "vlm_rationality", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "vlm_rationality" / "metrics" / "signals" / "centre_heat.py").write_text(PLUGIN)
    found = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "('centre_heat', 'none')" in found[0] and "('rma', 'box')" in found[0]
    assert found[1] == "[0.25, 0.25]"
