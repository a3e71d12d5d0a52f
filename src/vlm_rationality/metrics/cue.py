"""The cue's own relevance mass: how much of a heatmap lies on the spurious cue itself.

RMA says whether a map holds the object; a low RMA says only that the evidence is elsewhere. Where the benchmark
knows the cue's pixels (the synthetic sticker; for a background cue, the background), the relevance mass on them,
Σ(H⊙M_cue)/ΣH, names the wrong reason directly: per (dataset, shift, model, method, heatmap method) its mean over
the samples that carry the cue, and the share of right predictions whose map puts more mass on the cue than on the
object. Where the cue is the background, the cue mass is exactly 1 − RMA.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_CELLS = 1 << 22  # resampled values held at once (32 MiB), whatever the split's size


def bootstrap_mean(values: np.ndarray, iterations: int, rng: np.random.Generator, level: float) -> tuple[float, float]:
    """Percentile interval of the mean, the samples resampled with replacement, in chunks of BOOTSTRAP_CELLS."""
    if not iterations:
        return np.nan, np.nan
    chunk = max(1, BOOTSTRAP_CELLS // len(values))
    means = np.concatenate(
        [
            values[rng.integers(0, len(values), size=(min(chunk, iterations - done), len(values)))].mean(1)
            for done in range(0, iterations, chunk)
        ]
    )
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def cue_reliance(
    correct: np.ndarray,
    rma: np.ndarray,
    cue_rma: np.ndarray,
    iterations: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | int]:
    """Mean cue mass over the samples where it is defined (the cue present, the map defined), and the share of right
    predictions with cue mass > RMA among those where both are defined, each with a seeded percentile-bootstrap
    interval; NaN where no sample qualifies."""
    correct, rma, cue_rma = np.asarray(correct, bool), np.asarray(rma, float), np.asarray(cue_rma, float)
    rng = np.random.default_rng(seed)
    right = correct & ~np.isnan(cue_rma) & ~np.isnan(rma)
    measured = {
        "cue_mass": cue_rma[~np.isnan(cue_rma)],
        "cue_over_object": (cue_rma[right] > rma[right]).astype(float),
    }
    out: dict[str, float | int] = {"n_cue": len(measured["cue_mass"]), "n_cue_right": int(right.sum())}
    for name, values in measured.items():
        low, high = bootstrap_mean(values, iterations, rng, level) if len(values) else (np.nan, np.nan)
        out.update(
            {name: float(values.mean()) if len(values) else np.nan, f"{name}_ci_low": low, f"{name}_ci_high": high}
        )
    return out
