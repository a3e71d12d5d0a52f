"""Right for the right reasons: quadrants, prediction trustworthiness (PT) and inference reliability (IR).

A sample is *right* if the prediction equals the label and its rationale is *valid* if RMA ≥ threshold.
RR/RW/WR/WW count (prediction, rationale); PT = RR/(RR+RW) asks how often a correct prediction rests on
valid evidence, IR = RR/(RR+WR) how often valid evidence leads to a correct prediction. Samples whose RMA is
undefined (NaN) keep their place in accuracy but leave the quadrants; they are counted, not coerced.

Every metric is a function of six counts (four quadrants plus right/wrong with undefined RMA), so the
percentile bootstrap resamples those counts from a multinomial: the same distribution as resampling
samples with replacement, at O(iterations) cost whatever n is.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

QUADRANTS = ("RR", "RW", "WR", "WW")
# What an undefined RMA counts as. `exclude` (default): out of the quadrants, counted. `valid`: the official code's
# rule (`0 if es < 0.5 else 1` is 1 for a NaN RMA, i.e. a constant, all-zero or non-finite map), with an empty mask
# invalid (its RMA is 0 there). `invalid`: every undefined RMA is invalid evidence.
UNDEFINED_POLICIES = ("exclude", "valid", "invalid")
MAP_UNDEFINED = ("nonfinite_heatmap", "zero_mass", "constant_heatmap")
CATEGORIES = (*QUADRANTS, "R_undefined", "W_undefined")
METRICS = ("accuracy", "prediction_trustworthiness", "inference_reliability", "rr", "rw", "wr", "ww")


def category_counts(correct: np.ndarray, rma: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Counts of CATEGORIES for boolean `correct` and float `rma` (NaN = undefined)."""
    correct = np.asarray(correct, dtype=bool)
    rma = np.asarray(rma, dtype=np.float64)
    if correct.shape != rma.shape:
        raise ValueError(f"correct {correct.shape} and rma {rma.shape} differ in shape")
    defined = ~np.isnan(rma)
    valid = defined & (rma >= threshold)
    return np.array(
        [
            np.sum(correct & valid),
            np.sum(correct & defined & ~valid),
            np.sum(~correct & valid),
            np.sum(~correct & defined & ~valid),
            np.sum(correct & ~defined),
            np.sum(~correct & ~defined),
        ],
        dtype=np.int64,
    )


def resolve_undefined(rma: np.ndarray, statuses: np.ndarray, policy: str) -> np.ndarray:
    """RMA with the undefined entries decided by `policy`: +inf (valid at any threshold), -inf (invalid) or NaN."""
    if policy not in UNDEFINED_POLICIES:
        raise KeyError(f"unknown undefined_rma policy {policy!r}; use one of {', '.join(UNDEFINED_POLICIES)}")
    rma = np.array(rma, dtype=np.float64)
    undefined = np.isnan(rma)
    if policy == "valid":
        map_undefined = np.isin(np.asarray(statuses, dtype=object), MAP_UNDEFINED)
        rma[undefined & map_undefined] = np.inf
        rma[undefined & ~map_undefined] = -np.inf
    elif policy == "invalid":
        rma[undefined] = -np.inf
    return rma


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def metrics_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised over leading axes: counts [..., 6] -> each of METRICS [...] (NaN for a zero denominator)."""
    counts = np.asarray(counts, dtype=np.float64)
    rr, rw, wr, ww, r_undef, w_undef = np.moveaxis(counts, -1, 0)
    defined = rr + rw + wr + ww
    return {
        "accuracy": _ratio(rr + rw + r_undef, defined + r_undef + w_undef),
        "prediction_trustworthiness": _ratio(rr, rr + rw),
        "inference_reliability": _ratio(rr, rr + wr),
        "rr": _ratio(rr, defined),
        "rw": _ratio(rw, defined),
        "wr": _ratio(wr, defined),
        "ww": _ratio(ww, defined),
    }


def bootstrap_intervals(
    counts: np.ndarray, iterations: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Seeded percentile-bootstrap CIs of every metric from the six category counts."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0 or iterations <= 0:
        return {name: (np.nan, np.nan) for name in METRICS}
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=iterations)
    tail = 100 * (1 - level) / 2
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN draws (e.g. no right prediction at all)
        for name, values in metrics_from_counts(draws).items():
            low, high = np.nanpercentile(values, [tail, 100 - tail])
            out[name] = (float(low), float(high))
    return out


@dataclass
class Rationality:
    counts: dict[str, int]
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def undefined(self) -> int:
        return self.counts["R_undefined"] + self.counts["W_undefined"]

    def as_row(self) -> dict[str, float | int]:
        row: dict[str, float | int] = {"n": self.n, "n_undefined": self.undefined}
        row.update({f"n_{name}": value for name, value in self.counts.items() if name in QUADRANTS})
        for name, value in self.metrics.items():
            row[name] = value
            low, high = self.intervals.get(name, (np.nan, np.nan))
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
        return row


def rationality(
    correct: np.ndarray, rma: np.ndarray, threshold: float = 0.5, iterations: int = 1000, seed: int = 0
) -> Rationality:
    counts = category_counts(correct, rma, threshold)
    metrics = {name: float(value) for name, value in metrics_from_counts(counts).items()}
    return Rationality(dict(zip(CATEGORIES, map(int, counts))), metrics, bootstrap_intervals(counts, iterations, seed))
