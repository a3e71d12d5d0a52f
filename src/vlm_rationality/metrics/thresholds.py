"""Table 2 broken down: PT and IR against the RMA threshold (how much of a method ordering is the paper's 0.5), and
accuracy, PT and IR per class (how much of a method's number is a few classes).

Median RMA is about a third for every method on the embedded benchmark, so a threshold near it decides a large
share of the verdicts, and the method order can change between 0.3 and 0.5. Each (dataset, shift, model, method,
heatmap method) is scored at every threshold of a grid from its heatmap files, with the same count bootstrap as
Table 2, and the RMA of each scored sample is kept for the distributions. Per class, the same metrics at the
configured threshold: a method's average can hide classes near chance.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from vlm_rationality.artefacts import HEATMAP_KEYS, NO_PREDICTION, read_heatmaps
from vlm_rationality.metrics.rationality import rationality, resolve_undefined

GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 ... 0.95
CURVES = ("prediction_trustworthiness", "inference_reliability")


def stored_rma(
    heatmap_paths: Sequence[str | os.PathLike], undefined_rma: str = "exclude", sample_ids: bool = False
) -> dict[tuple[str, ...], dict[str, np.ndarray]]:
    """Key (HEATMAP_KEYS) -> `label`, `correct` and `rma` (and with `sample_ids` their `sample_id`) of the samples
    that made a prediction, the undefined RMA decided by `undefined_rma` as the score stage decides it."""
    parts: dict[tuple[str, ...], list[dict[str, np.ndarray]]] = defaultdict(list)
    for path in heatmap_paths:
        meta, table = read_heatmaps(path, ["label", "pred", "rma", "rma_status", *(["sample_id"] * sample_ids)])
        pred = table.column("pred").to_numpy()
        kept = pred != NO_PREDICTION
        label = table.column("label").to_numpy()[kept]
        statuses = np.asarray(table.column("rma_status").to_pylist(), dtype=object)[kept]
        rma = resolve_undefined(table.column("rma").to_numpy()[kept], statuses, undefined_rma)
        part = {"label": label, "correct": pred[kept] == label, "rma": rma}
        if sample_ids:
            part["sample_id"] = np.asarray(table.column("sample_id").to_pylist(), dtype=object)[kept]
        parts[tuple(meta["keys"][k] for k in HEATMAP_KEYS)].append(part)
    return {
        key: {name: np.concatenate([part[name] for part in found]) for name in found[0]}
        for key, found in sorted(parts.items())
    }


def threshold_rows(
    stored: dict[tuple[str, ...], dict[str, np.ndarray]],
    iterations: int,
    seed: int,
    thresholds: Sequence[float] = GRID,
) -> list[dict[str, Any]]:
    """One row per (key, threshold): PT and IR with their 95% intervals, and the RMA quartiles of the key."""
    rows = []
    for key, found in stored.items():
        finite = found["rma"][np.isfinite(found["rma"])]
        quartiles = np.percentile(finite, [25, 50, 75]) if finite.size else (np.nan,) * 3
        for threshold in thresholds:
            result = rationality(found["correct"], found["rma"], threshold, iterations, seed)
            row: dict[str, Any] = {**dict(zip(HEATMAP_KEYS, key)), "threshold": float(threshold)}
            for metric in CURVES:
                low, high = result.intervals[metric]
                row.update({metric: result.metrics[metric], f"{metric}_ci_low": low, f"{metric}_ci_high": high})
            row.update(rma_q25=float(quartiles[0]), rma_median=float(quartiles[1]), rma_q75=float(quartiles[2]))
            rows.append(row)
    return rows


PER_CLASS = ("accuracy", "prediction_trustworthiness", "inference_reliability")


def per_class_rows(
    stored: dict[tuple[str, ...], dict[str, np.ndarray]],
    class_names: dict[str, Sequence[str]],
    threshold: float,
    iterations: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per (key, class present in its scored split): n, accuracy, PT and IR at `threshold` with their 95%
    intervals. `class_names`: dataset -> its class names in label order."""
    rows = []
    for key, found in stored.items():
        names = class_names.get(key[0], ())
        for label in np.unique(found["label"]):
            chosen = found["label"] == label
            result = rationality(found["correct"][chosen], found["rma"][chosen], threshold, iterations, seed)
            row: dict[str, Any] = {
                **dict(zip(HEATMAP_KEYS, key)),
                "label": int(label),
                "class_name": names[label] if label < len(names) else str(label),
                "n": int(chosen.sum()),
                "threshold": threshold,
            }
            for metric in PER_CLASS:
                low, high = result.intervals[metric]
                row.update({metric: result.metrics[metric], f"{metric}_ci_low": low, f"{metric}_ci_high": high})
            rows.append(row)
    return rows
