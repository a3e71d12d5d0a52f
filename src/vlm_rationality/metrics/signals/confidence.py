"""The confidence baselines: what a rationale signal must beat. The logit margin (top logit minus the runner-up) and
the maximum softmax probability, from the stored logits; NaN where the logits are not all finite."""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from vlm_rationality.metrics.signals.base import SIGNALS, Evidence


def _finite(logits: np.ndarray) -> np.ndarray:
    return np.isfinite(logits).all(axis=1)


@SIGNALS.register("margin", reads="logits", masks="none", valid_at=None)
def margin(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    logits = np.asarray(evidence.logits, np.float64)
    top = np.sort(np.nan_to_num(logits), axis=1)
    return np.where(_finite(logits), top[:, -1] - top[:, -2], np.nan)


@SIGNALS.register("max_softmax", reads="logits", masks="none", valid_at=0.5)
def max_softmax(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    logits = np.asarray(evidence.logits, np.float64)
    return np.where(_finite(logits), softmax(np.nan_to_num(logits), axis=1).max(axis=1), np.nan)
