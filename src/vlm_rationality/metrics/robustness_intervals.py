"""Percentile-bootstrap intervals for the robustness table, every replicate at once: the test samples are resampled
(multinomial counts, one replicate a column of a weight matrix) and each statistic is a weighted sum over samples,
so B replicates cost a few matrix products, not B recomputations. AUROC resamples the ID and OOD sets each within
itself (agreement.weighted_auroc on stratified weights); shape bias resamples the cue-conflict images."""

from __future__ import annotations

import numpy as np

from vlm_rationality.metrics.agreement import stratified_weights, weighted_auroc
from vlm_rationality.metrics.calibration import softmax


def sample_weights(n: int, iterations: int, seed: int) -> np.ndarray:
    """float32 [n, iterations]: each column a bootstrap replicate's counts of the n samples."""
    return stratified_weights(np.zeros(n, np.int8), iterations, seed)


def interval(replicates: np.ndarray) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if not finite.size:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def calibration_replicates(
    logits: np.ndarray, labels: np.ndarray, temperature: float, weights: np.ndarray, bins: int = 15
) -> dict[str, np.ndarray]:
    """Accuracy, top-label ECE (the (lo, hi] bins of calibration.expected_calibration_error) and NLL under every
    replicate of `weights` [n, B], at temperature 1 and (where finite) `temperature`."""
    out: dict[str, np.ndarray] = {}
    total = weights.sum(axis=0, dtype=np.float64)
    for suffix, t in (("", 1.0), ("_ts", temperature)):
        if not np.isfinite(t):
            continue
        probs = softmax(logits, t)
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
        index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
        onehot = np.zeros((bins, len(labels)), np.float64)
        onehot[index, np.arange(len(labels))] = 1.0
        gaps = onehot @ (weights * (correct - confidence)[:, None])  # [bins, B]: Σ (correct − confidence) per bin
        out[f"ece{suffix}"] = np.abs(gaps).sum(axis=0) / total
        nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-300, None))
        out[f"nll{suffix}"] = (weights * nll[:, None]).sum(axis=0) / total
        if not suffix:
            out["accuracy"] = (weights * correct[:, None]).sum(axis=0) / total
    return out


def auroc_replicates(id_scores: np.ndarray, ood_scores: np.ndarray, iterations: int, seed: int) -> np.ndarray:
    """AUROC (ID positive) under `iterations` replicates that resample the ID and the OOD set each within itself."""
    scores = np.concatenate([id_scores, ood_scores]).astype(np.float64)
    positive = np.r_[np.ones(len(id_scores), bool), np.zeros(len(ood_scores), bool)]
    return weighted_auroc(scores, positive, stratified_weights(positive, iterations, seed))


def cue_conflict_replicates(
    decisions: np.ndarray, shapes: np.ndarray, textures: np.ndarray, iterations: int, seed: int
) -> dict[str, np.ndarray]:
    """Under resampled cue-conflict images: the shape bias, shape / (shape + texture) decisions, and the cue-conflict
    accuracy, shape decisions / conflicting images (the same resamples for both)."""
    conflict = shapes != textures
    shape = (conflict & (decisions == shapes)).astype(np.float64)
    either = shape + (conflict & (decisions == textures))
    weights = sample_weights(len(decisions), iterations, seed)
    shapes_drawn = (weights * shape[:, None]).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "shape_bias": shapes_drawn / (weights * either[:, None]).sum(axis=0),
            "cue_conflict_accuracy": shapes_drawn / (weights * conflict[:, None]).sum(axis=0),
        }
