"""Does a signal say anything about groundedness that the classifier's confidence and the class do not?

Two nested logistic models of object-groundedness among right predictions, `grounded ~ margin + class` and
`grounded ~ margin + class + signal`, on standardised features: the likelihood-ratio statistic of adding the signal
(χ² with one degree of freedom; the fits are lightly L2-regularised, C = 100, so that a class whose right
predictions are all grounded does not send its coefficient to infinity, which makes the test approximate), and the
gain in AUROC of their out-of-fold predictions (stratified k-fold), so that the larger model is not credited with
what it memorised. A signal that only restates the margin gains nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import chi2
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

FOLDS = 5


def _design(columns: list[np.ndarray], classes: np.ndarray) -> np.ndarray:
    standard = [(c - c.mean()) / (c.std() or 1.0) for c in columns]
    levels = np.unique(classes)
    onehot = (classes[:, None] == levels[None, 1:]).astype(np.float64)  # the first class is the intercept's
    return np.column_stack([*standard, onehot])


def _fit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=100.0, solver="newton-cholesky", max_iter=200).fit(x, y)


def _log_likelihood(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    return -float(log_loss(y, model.predict_proba(x), labels=[False, True], normalize=False))


def out_of_fold(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """P(grounded) of each sample from a model fitted without its fold; NaN where either outcome is too rare."""
    folds = min(FOLDS, int(y.sum()), int((~y).sum()))
    if folds < 2:
        return np.full(y.size, np.nan)
    out = np.empty(y.size)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        out[test] = _fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return out


class ConfidenceControl:
    """The reduced model `grounded ~ margin + class`, fitted once per (classifier, truth) and shared by every signal
    tested against it."""

    def __init__(self, margin: np.ndarray, classes: np.ndarray, grounded: np.ndarray, seed: int = 0) -> None:
        self.margin, self.classes = np.asarray(margin, np.float64), np.asarray(classes)
        self.grounded, self.seed = np.asarray(grounded, bool), seed
        self._reduced: dict[bytes, tuple[float, np.ndarray]] = {}

    def _reduced_fit(self, kept: np.ndarray) -> tuple[float, np.ndarray]:
        key = np.packbits(kept).tobytes()
        if key not in self._reduced:
            x, y = _design([self.margin[kept]], self.classes[kept]), self.grounded[kept]
            if y.all() or not y.any():
                self._reduced[key] = (float("nan"), np.full(y.size, np.nan))
            else:
                self._reduced[key] = (_log_likelihood(_fit(x, y), x, y), out_of_fold(x, y, self.seed))
        return self._reduced[key]

    def test(self, signal: np.ndarray) -> dict[str, Any]:
        """The likelihood-ratio test of adding `signal`, and both models' out-of-fold predictions on the samples
        where the signal is defined (`kept`), for a paired bootstrap of the AUROC gain."""
        signal = np.asarray(signal, np.float64)
        kept = np.isfinite(signal) & np.isfinite(self.margin)
        y = self.grounded[kept]
        reduced_ll, reduced_oof = self._reduced_fit(kept)
        if y.all() or not y.any():
            nan = np.full(y.size, np.nan)
            return {"kept": kept, "lr_stat": float("nan"), "lr_p": float("nan"), "full": nan, "reduced": nan}
        x = _design([self.margin[kept], signal[kept]], self.classes[kept])
        statistic = max(0.0, 2 * (_log_likelihood(_fit(x, y), x, y) - reduced_ll))
        return {
            "kept": kept,
            "lr_stat": statistic,
            "lr_p": float(chi2.sf(statistic, 1)),
            "full": out_of_fold(x, y, self.seed),
            "reduced": reduced_oof,
        }
