"""The true rationale: is a prediction object-grounded, by its counterfactual twins?

A prediction is *object-grounded* when it stays the same while only the background changes: on every twin (the
object on each other background), or on at least the share `agreement` of them. That is the ground truth RMA is
meant to estimate, so the true quadrants RR*, RW*, WR*, WW* (right/wrong prediction × grounded or not) and
PT* = RR*/(RR*+RW*), IR* = RR*/(RR*+WR*) follow the paper's definitions with "grounded" in place of "RMA ≥
threshold", with the same count-bootstrap intervals (metrics/rationality.py).

Two stricter readings separate grounding from robustness (the validity stage reports both beside PT*): a twin counts
against the prediction only when it is predicted as the class its cue is tied to (`cue_grounded`), or only when the
pretrained model keeps its own prediction on that twin (`grounded_beyond`).

Beside them, the Backgrounds Challenge's numbers: accuracy on the background alone (chance if the background
carries no class information), and the BG-gap: over the samples that have a twin showing their class's own cue
(the background their class is tied to, or the sticker on a sample of the sticker's class), accuracy on those twins
minus accuracy on their other twins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlm_rationality.artefacts import NO_PREDICTION
from vlm_rationality.metrics.rationality import rationality

COLUMNS = ("pt_true", "ir_true")
CUE_COLUMNS = ("pt_true_cue", "ir_true_cue")  # under `cue_grounded`: the truth the tables lead with
NO_GROUNDING: dict[str, Any] = {
    **{f"{name}{suffix}": None for name in (*COLUMNS, *CUE_COLUMNS) for suffix in ("", "_ci_low", "_ci_high")},
    "n_object_grounded": None,
    "acc_background_alone": None,
    "bg_gap": None,
    "twins_agreement": None,
}


def object_grounded(pred: np.ndarray, twin_pred: np.ndarray, agreement: float = 1.0) -> np.ndarray:
    """bool [N]: the share of twins predicted as the original is at least `agreement` (1.0: every twin)."""
    pred, twin_pred = np.asarray(pred), np.asarray(twin_pred)
    if twin_pred.shape[1] == 0:
        raise ValueError("no twins to decide object-groundedness from (twins.backgrounds is 0?)")
    same = (twin_pred == pred[:, None]).mean(axis=1)
    return (same >= agreement - 1e-12) & (pred != NO_PREDICTION)


def cue_grounded(pred: np.ndarray, twin_pred: np.ndarray, cue_class: np.ndarray) -> np.ndarray:
    """bool [N]: no twin is predicted as the class its cue pulls towards, where that class is not the original
    prediction. A twin that turns the prediction into some third class is a failure of robustness, not the cue
    pulling; this truth does not count it. Twins whose cue names no class (-1) never count."""
    pred, twin_pred, cue_class = np.asarray(pred), np.asarray(twin_pred), np.asarray(cue_class)
    pulled = (cue_class >= 0) & (cue_class != pred[:, None]) & (twin_pred == cue_class)
    return ~pulled.any(axis=1) & (pred != NO_PREDICTION)


def grounded_beyond(
    pred: np.ndarray, twin_pred: np.ndarray, reference_pred: np.ndarray, reference_twin_pred: np.ndarray
) -> np.ndarray:
    """bool [N]: every twin keeps the prediction, or the reference classifier (ZS: the pretrained model before any
    fine-tuning) also changes its own prediction on that very twin. The twins of a sample are the same images for
    every classifier, so this removes the pretrained model's own floor of non-robustness pair by pair."""
    pred, twin_pred = np.asarray(pred), np.asarray(twin_pred)
    floor = np.asarray(reference_twin_pred) != np.asarray(reference_pred)[:, None]
    return ((twin_pred == pred[:, None]) | floor).all(axis=1) & (pred != NO_PREDICTION)


def _share(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if hits.size else None


def grounding(
    label: np.ndarray,
    pred: np.ndarray,
    twin_pred: np.ndarray,
    same_class: np.ndarray,
    alone_pred: np.ndarray,
    agreement: float = 1.0,
    iterations: int = 1000,
    seed: int = 0,
    cue_class: np.ndarray | None = None,
) -> dict[str, Any]:
    """PT*, IR* with intervals (and PT*_cue, IR*_cue where the twins name the class each cue pulls towards,
    `cue_class` [N, K]), the number of grounded samples, background-alone accuracy and the BG-gap, over the samples
    that made a prediction."""
    predicted = np.asarray(pred) != NO_PREDICTION
    label, pred = np.asarray(label)[predicted], np.asarray(pred)[predicted]
    twin_pred, same_class = np.asarray(twin_pred)[predicted], np.asarray(same_class, bool)[predicted]
    grounded = object_grounded(pred, twin_pred, agreement)
    row: dict[str, Any] = {f"{name}{suffix}": None for name in CUE_COLUMNS for suffix in ("", "_ci_low", "_ci_high")}
    truths = [(COLUMNS, grounded)]
    if cue_class is not None and (np.asarray(cue_class) >= 0).any():
        truths.append((CUE_COLUMNS, cue_grounded(pred, twin_pred, np.asarray(cue_class)[predicted])))
    for columns, truth in truths:
        result = rationality(pred == label, truth.astype(np.float64), 0.5, iterations, seed)
        for name, metric in zip(columns, ("prediction_trustworthiness", "inference_reliability")):
            low, high = result.intervals[metric]
            row.update({name: result.metrics[metric], f"{name}_ci_low": low, f"{name}_ci_high": high})
    # within the samples that have a twin showing their class's own cue, so that a cue tied to one class (the
    # sticker) is not read as that class's accuracy against the others'
    twin_right, has_own = twin_pred == label[:, None], same_class.any(axis=1)
    own, other = _share(twin_right[same_class]), _share(twin_right[has_own][~same_class[has_own]])
    row.update(
        n_object_grounded=int(grounded.sum()),
        acc_background_alone=_share(np.asarray(alone_pred)[predicted] == label),
        bg_gap=None if own is None or other is None else own - other,
        twins_agreement=agreement,
    )
    return row
