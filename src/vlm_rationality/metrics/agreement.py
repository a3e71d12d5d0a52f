"""How well a per-sample score tracks a per-sample truth: the AUROC of a score and Cohen's κ of two decisions."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting a half (Mann–Whitney U / (n₊·n₋)); NaN scores
    are left out, and NaN is returned where either class is empty."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    kept = ~np.isnan(scores)
    scores, positive = scores[kept], positive[kept]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two boolean decisions beyond chance: (p_o − p_e) / (1 − p_e); NaN where p_e is 1."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.size == 0:
        return float("nan")
    observed = float((a == b).mean())
    expected = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return float("nan") if expected == 1 else (observed - expected) / (1 - expected) + 0.0  # no -0.0
