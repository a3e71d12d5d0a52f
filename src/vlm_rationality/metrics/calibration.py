"""Calibration of the predicted class probabilities: top-label ECE, NLL and temperature scaling.

ECE follows Guo et al. (2017): confidences (the top softmax probability, in float64) fall into equal-width bins
(lo, hi]; ECE = Σ_b |B_b|/n · |accuracy(B_b) − mean confidence(B_b)|. These are Guo et al.'s bins and
torchmetrics' before 1.0; since 1.0 torchmetrics bins [lo, hi) with `torch.bucketize` in the probabilities' own
dtype (float32 from float32 logits) and puts a confidence of exactly 1.0 in a bin of its own. The two agree to
float32 rounding unless confidences saturate: at large logit scales many float32 confidences round to 1.0 and the
values part by up to ~1e-2 (tests/metrics/test_robustness_metrics.py measures both on such a case). Temperature
scaling fits one T > 0 on held-out in-distribution logits by minimising NLL and applies it unchanged everywhere else;
NLL is convex in 1/T, so a bounded scalar search finds the global optimum.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature, axis=1))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE of probabilities [N, C] against integer labels [N] with `bins` equal-width bins."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    # (lo, hi] bins; a confidence of exactly 0 cannot occur for a probability vector's maximum
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    gap = np.abs(np.bincount(index, correct, bins) - np.bincount(index, confidence, bins))  # per bin, summed
    return float(gap.sum() / len(labels))


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin (lo, hi], as ECE bins: mean confidence, accuracy and sample count (NaN where
    a bin is empty): the points of a reliability diagram."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.bincount(index, confidence, bins) / counts, np.bincount(index, correct, bins) / counts, counts)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / T) at the labels."""
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (1e-2, 1e2)) -> float:
    """The T in `bounds` minimising held-out NLL (searched over 1/T, where NLL is convex)."""
    low, high = bounds
    result = minimize_scalar(
        lambda inverse: negative_log_likelihood(logits, labels, 1.0 / inverse),
        bounds=(1.0 / high, 1.0 / low),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(1.0 / result.x)
