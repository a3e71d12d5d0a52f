"""In-distribution against out-of-distribution across classifiers: does what a method gains on the clean test split
carry over to each shift and OOD metric? One point per classifier (dataset, model, method) of a robustness run.

Rates go on probit axes (Φ⁻¹, clipped to [`EPS`, 1 − `EPS`] so a perfect 1.0 stays finite), where accuracy on and
off distribution is close to linear (Miller et al.'s "accuracy on the line"); the line is a Huber fit
(scikit-learn's `HuberRegressor`), which a single off-line classifier does not drag; R² is that line's on the probit
points, Spearman ρ the rank agreement (axis-free). Fewer than `MIN_POINTS` classifiers: no line (NaN), only ρ.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtri
from scipy.stats import spearmanr
from sklearn.linear_model import HuberRegressor

EPS = 1e-4
MIN_POINTS = 3
KEYS = ("dataset", "model", "method")


def probit(rates: np.ndarray) -> np.ndarray:
    return ndtri(np.clip(np.asarray(rates, np.float64), EPS, 1 - EPS))


def metric_points(rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[tuple, float, float]]]:
    """metric -> [(classifier, ID accuracy, metric)]: the accuracy under every other shift (`accuracy@<shift>`) and,
    of the clean rows, every OOD AUROC and the shape bias, wherever they are finite."""
    clean = {tuple(row[k] for k in KEYS): row for row in rows if row["shift"] == "clean"}
    points: dict[str, list[tuple[tuple, float, float]]] = {}
    for row in rows:
        key = tuple(row[k] for k in KEYS)
        if key not in clean:
            continue
        x = clean[key]["accuracy"]
        found = {f"accuracy@{row['shift']}": row["accuracy"]} if row["shift"] != "clean" else {}
        if row["shift"] == "clean":
            found.update(
                {name: value for name, value in row.items() if name.startswith("auroc.") and "_ci_" not in name}
            )
            found["shape_bias"] = row.get("shape_bias", math.nan)
        for metric, y in found.items():
            if y is not None and math.isfinite(x) and math.isfinite(y):
                points.setdefault(metric, []).append((key, float(x), float(y)))
    return points


def line(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The Huber fit of y on x (probit units) with its R², and Spearman's ρ."""
    found = {"slope": math.nan, "intercept": math.nan, "r2": math.nan, "spearman": math.nan}
    if len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
        found["spearman"] = float(spearmanr(x, y).statistic)
    if len(x) >= MIN_POINTS and np.ptp(x) > 0:
        fit = HuberRegressor().fit(x[:, None], y)
        residual = y - fit.predict(x[:, None])
        total = float(np.sum((y - y.mean()) ** 2))
        found.update(slope=float(fit.coef_[0]), intercept=float(fit.intercept_))
        found["r2"] = 1 - float(np.sum(residual**2)) / total if total > 0 else math.nan
    return found


def id_ood_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per metric: how many classifiers, the probit-space Huber line, its R², Spearman's ρ."""
    out = []
    for metric, points in sorted(metric_points(rows).items()):
        x, y = (np.array([p[i] for p in points]) for i in (1, 2))
        out.append({"metric": metric, "n_classifiers": len(points), **line(probit(x), probit(y))})
    return out
