"""How well a per-sample score tracks a per-sample truth: the AUROC of a score (pooled, under bootstrap weights, and
within class) and Cohen's κ of two decisions."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import cohen_kappa_score, roc_auc_score


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """scikit-learn's AUROC (ties count a half); NaN scores are left out, and NaN is returned where either class is
    empty (scikit-learn raises)."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    kept = ~np.isnan(scores)
    scores, positive = scores[kept], positive[kept]
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-learn's Cohen's κ of two boolean decisions; NaN where chance agreement is 1 (both decisions constant and
    equal: scikit-learn divides by zero) or there is no sample."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.size == 0 or (a.all() and b.all()) or not (a.any() or b.any()):
        return float("nan")
    return float(cohen_kappa_score(a, b, labels=[False, True])) + 0.0  # no -0.0


def weighted_auroc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC under sample weights, one value per column of `weights` [n, B] (a bootstrap's multinomial counts, one
    replicate a column): with all weights 1 it equals `auroc`. Ties count a half; NaN where a replicate gives either
    class no weight. `scores` must be finite. One sort, then a cumulative sum of the negatives' weights for every
    replicate at once (float32: counts are exact integers there, the sums good to ~1e-7)."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    weights = np.asarray(weights, np.float32).reshape(scores.size, -1)
    order = np.argsort(scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    w = weights[order]
    negatives = w * ~hits[:, None]
    below = np.concatenate([np.zeros((1, w.shape[1]), np.float32), np.cumsum(negatives, axis=0)])  # [n + 1, B]
    new = np.r_[True, ranked[1:] != ranked[:-1]] if ranked.size else np.zeros(0, bool)
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    first, last = starts[group][hits], np.r_[starts[1:], ranked.size][group][hits]
    under = below[first]
    pos = w[hits]
    numerator = (pos * (under + 0.5 * (below[last] - under))).sum(axis=0, dtype=np.float64)
    total = pos.sum(axis=0, dtype=np.float64) * negatives.sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, numerator / np.where(total > 0, total, 1), np.nan)


def stratified_weights(groups: np.ndarray, iterations: int, seed: int = 0) -> np.ndarray:
    """[n, iterations] multinomial bootstrap counts (float32), each group resampled within itself (Agarwal et al.,
    2021): a replicate keeps every class's size, so class composition cannot move a within-class number."""
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    weights = np.zeros((groups.size, iterations), np.float32)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        weights[members] = rng.multinomial(members.size, np.full(members.size, 1 / members.size), iterations).T
    return weights


def within_class_auroc(
    scores: np.ndarray, positive: np.ndarray, classes: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, dict[int, float]]:
    """The mean over classes of each class's own AUROC, one value per replicate of `weights` [n, B] (without: one
    value), and the unweighted AUROC per class. Only classes with both a positive and a negative sample count: a
    class whose samples are all positive says nothing about ranking. Pooling over classes instead lets the class a
    sample belongs to decide its rank (Simpson's paradox)."""
    scores, positive, classes = np.asarray(scores, np.float64), np.asarray(positive, bool), np.asarray(classes)
    weights = np.ones((scores.size, 1), np.float32) if weights is None else weights
    per_class, replicates = {}, []
    for c in np.unique(classes):
        members = classes == c
        if positive[members].all() or not positive[members].any():
            continue
        per_class[int(c)] = auroc(scores[members], positive[members])
        replicates.append(weighted_auroc(scores[members], positive[members], weights[members]))
    if not replicates:
        return np.full(weights.shape[1], np.nan), per_class
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate that drew one side of every class
        return np.nanmean(np.stack(replicates), axis=0), per_class
