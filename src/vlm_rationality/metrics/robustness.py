"""The robustness table: calibration, OOD detection and shape bias from the predictions files.

One row per (dataset, shift, model, method): accuracy, ECE and NLL before and after temperature scaling (T fitted
on the validation set and applied unchanged to every shift), T itself; on the clean row also the in-distribution
calibration (`id_*`: the validation set itself, two-fold cross-fitted, so no sample is scored by a T fitted on it:
the test split of a spuriously correlated dataset is not the training distribution), AUROC and FPR@95 per OOD set
and score (ID = the clean test set, ID positive) and the shape bias on the cue-conflict set. A sample whose
logits are not all finite is left out of every metric and counted.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from vlm_rationality.imagenet16 import imagenet16
from vlm_rationality.metrics.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from vlm_rationality.metrics.ood import SCORES, auroc, fpr_at_tpr, mcm
from vlm_rationality.metrics.robustness_intervals import (
    auroc_replicates,
    calibration_replicates,
    cue_conflict_replicates,
    interval,
    sample_weights,
)
from vlm_rationality.metrics.shape_bias import category_probabilities, shape_bias

TEST_PREFIX = "test/"  # the predictions stage names the test set under shift s `test/s`
OOD_SCORES = ("msp", "mcm", "energy", "max_logit")


def _finite(logits: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = np.isfinite(logits).all(axis=1) if logits.size else np.ones(len(logits), bool)
    return (logits[keep], *(o[keep] for o in others))


def _scores(logits: np.ndarray, cosines: np.ndarray) -> dict[str, np.ndarray]:
    return {**{name: score(logits) for name, score in SCORES.items()}, "mcm": mcm(cosines)}


def _calibration(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    if not len(labels):
        return {"accuracy": math.nan, "ece": math.nan, "nll": math.nan, "ece_ts": math.nan, "nll_ts": math.nan}
    scaled = math.isfinite(temperature)
    return {
        "accuracy": float(np.mean(logits.argmax(1) == labels)),
        "ece": expected_calibration_error(softmax(logits), labels),
        "nll": negative_log_likelihood(logits, labels),
        "ece_ts": expected_calibration_error(softmax(logits, temperature), labels) if scaled else math.nan,
        "nll_ts": negative_log_likelihood(logits, labels, temperature) if scaled else math.nan,
    }


def cross_fitted(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ECE and NLL of held-out in-distribution logits before and after temperature scaling, two-fold: each half is
    scaled by the T fitted on the other half (halves by position: the sets are in generation order)."""
    if len(labels) < 2:
        return {"id_ece": math.nan, "id_nll": math.nan, "id_ece_ts": math.nan, "id_nll_ts": math.nan}
    halves = np.arange(len(labels)) % 2 == 0
    scaled = np.empty_like(logits, dtype=np.float64)
    for fold in (halves, ~halves):
        scaled[fold] = logits[fold] / fit_temperature(logits[~fold], labels[~fold])
    return {
        "id_ece": expected_calibration_error(softmax(logits), labels),
        "id_nll": negative_log_likelihood(logits, labels),
        "id_ece_ts": expected_calibration_error(softmax(scaled), labels),
        "id_nll_ts": negative_log_likelihood(scaled, labels),
    }


def cue_decisions(logits: np.ndarray, categories: str | None) -> np.ndarray:
    """Class decisions on cue-conflict images; with `imagenet16`, an ImageNet-1k classifier's decision among the
    16 stimulus categories (mean member probability, then argmax), or a 16-way classifier's own."""
    if categories is None or logits.shape[1] == len(imagenet16()):
        return logits.argmax(1)
    if logits.shape[1] != 1000:
        raise ValueError(
            f"the cue-conflict stimuli are labelled with 16 categories; a classifier of {logits.shape[1]} "
            "classes has no mapping to them (an ImageNet-1k classifier has)"
        )
    return category_probabilities(softmax(logits)).argmax(1)


Predictions = tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]  # what artefacts.read_predictions returns


def _with_intervals(row: dict[str, Any], replicates: dict[str, np.ndarray]) -> None:
    for name, values in replicates.items():
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = interval(values)


def restrict(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A set scored on its own classes (ImageNet-R, -A: the standard protocol): the logits of the classes its labels
    name, the labels as positions among them, so a class outside the set never wins and calibration reads a softmax
    over the set's classes."""
    classes = np.unique(labels)
    return logits[:, classes], np.searchsorted(classes, labels)


def robustness_rows(
    predictions: Sequence[Predictions],
    validation: str,
    ood: Sequence[str],
    cue_conflict: str | None,
    cue_categories: str | None = None,
    iterations: int = 1000,
    seed: int = 0,
    restricted: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Each metric of the test sets with its 95% percentile-bootstrap interval (`_ci_low`, `_ci_high`, over
    `iterations` replicates: robustness_intervals.py); the in-distribution `id_*` and FPR@95 without one. A test set
    under a natural shift (ImageNet-V2, -R, …) is a row like a corruption's; `restricted` sets on their classes."""
    rows = []
    for meta, sets in predictions:
        keys, skipped = meta["keys"], meta.get("skipped", {})
        temperature, in_distribution = math.nan, cross_fitted(np.zeros((0, 1)), np.zeros(0))
        if validation in sets:
            logits, labels = _finite(sets[validation]["logits"], sets[validation]["label"])
            temperature = fit_temperature(logits, labels) if len(labels) else math.nan
            in_distribution = cross_fitted(logits, labels)
        clean_id = None
        for name in sorted(
            (n for n in sets if n.startswith(TEST_PREFIX)), key=lambda n: (n != TEST_PREFIX + "clean", n)
        ):
            shift = name[len(TEST_PREFIX) :]
            logits, labels, cosines = _finite(sets[name]["logits"], sets[name]["label"], sets[name]["cosines"])
            if name in restricted and len(labels):
                logits, labels = restrict(logits, labels)
            row: dict[str, Any] = {
                **{k: keys[k] for k in ("dataset", "model", "method")},
                "shift": shift,
                "n": int(len(labels)),
                **_calibration(logits, labels, temperature),
                "temperature": temperature,
                "n_nonfinite_logits": len(sets[name]["label"]) - len(labels),
                "n_skipped": int(skipped.get(name, 0)),
            }
            if len(labels):
                weights = sample_weights(len(labels), iterations, seed)
                _with_intervals(row, calibration_replicates(logits, labels, temperature, weights))
            if shift == "clean":
                row.update(in_distribution)
                clean_id = _scores(logits, cosines)
                for ood_name in ood:
                    row[f"n_skipped.{ood_name}"] = int(skipped.get(ood_name, 0))
                    outside = _finite(sets[ood_name]["logits"], sets[ood_name]["cosines"]) if ood_name in sets else ()
                    scores = _scores(*outside) if outside and len(outside[0]) else {s: np.zeros(0) for s in OOD_SCORES}
                    for score in OOD_SCORES:
                        row[f"auroc.{ood_name}.{score}"] = auroc(clean_id[score], scores[score])
                        row[f"fpr95.{ood_name}.{score}"] = fpr_at_tpr(clean_id[score], scores[score])
                        if len(clean_id[score]) and len(scores[score]):
                            found = auroc_replicates(clean_id[score], scores[score], iterations, seed)
                            _with_intervals(row, {f"auroc.{ood_name}.{score}": found})
                if cue_conflict is not None and cue_conflict in sets:
                    cue_logits, shapes, textures = _finite(
                        sets[cue_conflict]["logits"], sets[cue_conflict]["label"], sets[cue_conflict]["background"]
                    )
                    decisions = cue_decisions(cue_logits, cue_categories)
                    found = shape_bias(decisions, shapes, textures)
                    conflicting = found.shape_decisions + found.texture_decisions + found.other_decisions
                    row.update(
                        shape_bias=found.shape_bias,
                        cue_conflict_accuracy=found.shape_decisions / conflicting if conflicting else math.nan,
                        shape_decisions=found.shape_decisions,
                        texture_decisions=found.texture_decisions,
                    )
                    if len(decisions):
                        _with_intervals(row, cue_conflict_replicates(decisions, shapes, textures, iterations, seed))
            rows.append(row)
    return rows
