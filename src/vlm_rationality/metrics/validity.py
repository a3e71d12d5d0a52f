"""Does a rationale signal measure what it claims? Every registered signal against the twins' ground truth.

For every (dataset, model, method, heatmap method) on the clean scored split, each signal of `metrics/signals/`
is computed from what the explain and twins stages stored (RMA and the other localisation signals under each mask
variant of `masks.py`, the confidence baselines from the logits, object-only retention from the twins job),
and set beside each reading of the truth (metrics/grounding.py): PT beside PT*, and per sample, among right
predictions, the signal's AUROC for groundedness pooled and **within class** (the mean of the per-class AUROCs: a
signal that tracks the mask's area ranks classes, not rationales), and what it adds **beyond confidence**
(metrics/beyond_confidence.py), each with class-stratified bootstrap intervals.

The truths (`TRUTHS`): `twins` (PT*: the prediction survives every twin, or `twins.agreement` of them),
`all-but-one` (every twin but one), `cue` (no twin is predicted as the class its cue is tied to) and `beyond-zs`
(no twin changes the prediction where the pretrained model keeps its own).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from multiprocessing import get_context
from typing import Any, Sequence

import numpy as np
import torch

from vlm_rationality.artefacts import NO_PREDICTION, PreparedShard, read_heatmaps
from vlm_rationality.masks import EXACT, mask_variant
from vlm_rationality.metrics.agreement import (
    cohen_kappa,
    stratified_weights,
    weighted_auroc,
    within_class_auroc,
)
from vlm_rationality.metrics.beyond_confidence import ConfidenceControl
from vlm_rationality.metrics.grounding import cue_grounded, grounded_beyond, object_grounded
from vlm_rationality.metrics.rationality import rationality
from vlm_rationality.metrics.score import aligned_twins, twin_columns
from vlm_rationality.metrics.signals import SIGNALS, Evidence
from vlm_rationality.registry import declared

KEYS = ("dataset", "model", "method", "heatmap_method")
TRUTHS = ("twins", "all-but-one", "cue", "beyond-zs")
# The truths every signal is analysed against (AUROC, the gain beyond confidence, with intervals); `all-but-one`
# only shows how much one twin moves PT*, and its analyses would cost a third more of the stage's time.
ANALYSED = ("twins", "cue", "beyond-zs")
ANALYSIS_COLUMNS = (
    "n_scored",
    *(f"{name}{part}" for name in ("auroc", "auroc_within") for part in ("", "_ci_low", "_ci_high")),
    "n_classes_within",
    "auroc_per_class",
    "lr_stat",
    "lr_p",
    *(f"auroc_gain{part}" for part in ("", "_ci_low", "_ci_high")),
)
PT, IR = "prediction_trustworthiness", "inference_reliability"
NO_HEATMAP = "none"  # the heatmap method of a signal that reads no map (confidence, retention, mask area)
NO_MASK = "none"


@cache
def _shard_masks(path: str) -> dict[str, np.ndarray]:
    """sample id -> exact mask of one prepared shard, read once however many heatmap files name it."""
    shard = PreparedShard(path).read()
    return dict(zip(shard["sample_id"], shard["mask"]))


def _masks(paths: Sequence[str]) -> dict[str, np.ndarray]:
    return {i: m for path in paths for i, m in _shard_masks(str(path)).items()}


def stored_evidence(heatmap_paths: Sequence[str | os.PathLike]) -> dict[tuple, dict[str, Any]]:
    """(dataset, model, method, heatmap method) of each clean heatmap file -> sample ids, labels, predictions,
    logits, the patch-grid maps and the exact masks, in file order."""
    found: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for path in heatmap_paths:
        meta, table = read_heatmaps(path, ["sample_id", "label", "pred", "logits", "heatmap"])
        if meta["keys"]["shift"] != "clean":
            continue
        ids = table.column("sample_id").to_pylist()
        masks = _masks(meta["source_shards"])
        entry = found[tuple(meta["keys"][k] for k in KEYS)]
        entry["sample_id"] += ids
        entry["label"].append(table.column("label").to_numpy())
        entry["pred"].append(table.column("pred").to_numpy())
        entry["mask"].append(np.stack([masks[i] for i in ids]) if ids else np.zeros((0, 1, 1), bool))
        for name, shape in (("logits", (-1,)), ("heatmap", tuple(meta["grid_size"]))):
            flat = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            entry[name].append(np.asarray(flat, np.float32).reshape(len(ids), *shape))
    return {
        key: {name: values if name == "sample_id" else np.concatenate(values) for name, values in entry.items()}
        for key, entry in found.items()
    }


def truths(twins: dict[str, Any], reference: dict[str, Any] | None, agreement: float) -> dict[str, np.ndarray]:
    """Each reading of object-groundedness, bool [N], for the twins of one classifier (aligned to its samples);
    `cue` where some twin's cue names a class, `beyond-zs` where a reference classifier's twins exist."""
    pred, twin_pred = twins["pred"], twins["twin_pred"]
    count = twin_pred.shape[1]
    out = {
        "twins": object_grounded(pred, twin_pred, agreement),
        "all-but-one": object_grounded(pred, twin_pred, (count - 1) / count if count > 1 else 1.0),
    }
    if (twins["twin_cue_class"] >= 0).any():
        out["cue"] = cue_grounded(pred, twin_pred, twins["twin_cue_class"])
    if reference is not None:
        out["beyond-zs"] = grounded_beyond(pred, twin_pred, reference["pred"], reference["twin_pred"])
    return out


def signal_scores(
    evidence: Evidence, masks: np.ndarray, variants: Sequence[str], heatmap: bool
) -> list[tuple[str, str, np.ndarray]]:
    """(signal, mask variant, per-sample score) of every registered signal: those that read the map when `heatmap`,
    the others (confidence, retention, mask area) when not."""
    loosened = {variant: mask_variant(masks, variant) for variant in {*variants, EXACT}}  # once, for every signal
    loosened[NO_MASK] = masks
    out = []
    for name, facts in declared("vlm_rationality.metrics.signals", "SIGNALS").items():
        if (facts["reads"] == "heatmap") != heatmap:
            continue
        signal = SIGNALS.get(name)
        for variant in {"variants": variants, "exact": [EXACT], "none": [NO_MASK]}[facts["masks"]]:
            out.append((name, variant, signal(evidence, loosened[variant])))
    return out


def _interval(name: str, replicates: np.ndarray) -> dict[str, float]:
    """The 95% percentile interval over the bootstrap replicates (all but the last, the point estimate)."""
    finite = replicates[:-1][np.isfinite(replicates[:-1])]
    low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (np.nan, np.nan)
    return {f"{name}_ci_low": float(low), f"{name}_ci_high": float(high)}


def discrimination(
    scores: np.ndarray,
    grounded: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    control: ConfidenceControl,
) -> dict[str, Any]:
    """Pooled and within-class AUROC of `scores` for `grounded`, and the gain beyond confidence, each with its
    bootstrap interval from the (class-stratified) replicate `weights` [n, B]; all over the same right predictions,
    those where the score is defined. The point estimates ride along as one more replicate of weight 1."""
    tested = control.test(scores)
    kept = tested["kept"]
    s, g, c = scores[kept], grounded[kept], classes[kept]
    w = np.concatenate([weights[kept], np.ones((int(kept.sum()), 1), np.float32)], axis=1)
    within, per_class = within_class_auroc(s, g, c, w)
    pooled = weighted_auroc(s, g, w)
    row = {
        "n_scored": int(kept.sum()),
        "auroc": float(pooled[-1]),
        **_interval("auroc", pooled),
        "auroc_within": float(within[-1]),
        **_interval("auroc_within", within),
        "n_classes_within": len(per_class),
        "auroc_per_class": json.dumps({str(k): round(v, 6) for k, v in per_class.items()}),
        "lr_stat": tested["lr_stat"],
        "lr_p": tested["lr_p"],
    }
    if np.isnan(tested["full"]).any() or np.isnan(tested["reduced"]).any():
        return {**row, "auroc_gain": float("nan"), **_interval("auroc_gain", np.full(1, np.nan))}
    gain = weighted_auroc(tested["full"], g, w) - weighted_auroc(tested["reduced"], g, w)
    return {**row, "auroc_gain": float(gain[-1]), **_interval("auroc_gain", gain)}


def _valid_at(facts: dict[str, Any], threshold: float) -> float | None:
    return threshold if facts["valid_at"] == "threshold" else facts["valid_at"]


def validity_rows(
    heatmap_paths: Sequence[str | os.PathLike],
    twins_paths: Sequence[str | os.PathLike],
    variants: Sequence[str],
    threshold: float = 0.5,
    agreement: float = 1.0,
    reference: str | None = None,
    iterations: int = 1000,
    seed: int = 0,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """One row per (dataset, model, method, heatmap method, signal, mask variant, truth) that has heatmaps and twins.
    `reference`: the method whose twins set the floor of `beyond-zs` (ZS), if any. Each (classifier, heatmap method)
    is one task, run in `workers` processes."""
    twins = twin_columns(twins_paths)
    evidence_by_key = stored_evidence(heatmap_paths)
    first_heatmap: dict[tuple, str] = {}
    for key in sorted(evidence_by_key):
        first_heatmap.setdefault(key[:3], key[3])
    tasks = []
    for key, found in sorted(evidence_by_key.items()):
        if key[:3] not in twins:
            continue
        what = str(dict(zip(KEYS, key)))
        mine = aligned_twins(twins[key[:3]], found["sample_id"], what)
        ref_key = (*key[:2], reference)
        ref = aligned_twins(twins[ref_key], found["sample_id"], what) if reference and ref_key in twins else None
        settings = (variants, threshold, agreement, iterations, seed, first_heatmap[key[:3]] == key[3])
        tasks.append((key, found, mine, ref, settings))
    if workers <= 1 or len(tasks) <= 1:
        return [row for task in tasks for row in _task_rows(task)]
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=get_context("spawn")) as pool:
        return [row for rows in pool.map(_task_rows, tasks) for row in rows]


def _task_rows(task: tuple) -> list[dict[str, Any]]:
    """The rows of one (classifier, heatmap method): every signal against every truth. Signals that read no map are
    computed with the classifier's first heatmap method only (`with_mapless`)."""
    key, found, mine, ref, (variants, threshold, agreement, iterations, seed, with_mapless) = task
    torch.set_num_threads(1)
    facts = declared("vlm_rationality.metrics.signals", "SIGNALS")
    evidence = Evidence(torch.from_numpy(found["heatmap"]), found["logits"], found["pred"], mine["object_pred"])
    scores = signal_scores(evidence, found["mask"], variants, heatmap=True)
    if with_mapless:
        scores += signal_scores(evidence, found["mask"], variants, heatmap=False)
    predicted = found["pred"] != NO_PREDICTION
    correct = found["pred"] == found["label"]
    right = predicted & correct
    labels = found["label"][right]
    weights = stratified_weights(labels, iterations, seed)
    margin = SIGNALS.get("margin")(evidence, found["mask"])[right]
    rows = []
    for truth, grounded in truths(mine, ref, agreement).items():
        true_result = rationality(correct[predicted], grounded[predicted].astype(np.float64), 0.5, iterations, seed)
        control = ConfidenceControl(margin, labels, grounded[right], seed)
        for name, variant, values in scores:
            valid_at = _valid_at(facts[name], threshold)
            result = rationality(correct[predicted], values[predicted], valid_at, 0) if valid_at is not None else None
            scored = right & np.isfinite(values)
            analysed = (
                discrimination(values[right], grounded[right], labels, weights, control)
                if truth in ANALYSED
                else dict.fromkeys(ANALYSIS_COLUMNS)
            )
            rows.append(
                {
                    **dict(zip(KEYS, key)),
                    "heatmap_method": key[3] if facts[name]["reads"] == "heatmap" else NO_HEATMAP,
                    "signal": name,
                    "mask": variant,
                    "truth": truth,
                    "n": int(predicted.sum()),
                    "n_right": int(right.sum()),
                    "n_right_grounded": int((right & grounded).sum()),
                    "accuracy": float(correct[predicted].mean()) if predicted.any() else float("nan"),
                    "valid_at": float("nan") if valid_at is None else float(valid_at),
                    "prediction_trustworthiness": (
                        result.metrics["prediction_trustworthiness"] if result else float("nan")
                    ),
                    "inference_reliability": result.metrics["inference_reliability"] if result else float("nan"),
                    **{
                        f"{column}{part}": value
                        for column, metric in (("pt_true", PT), ("ir_true", IR))
                        for part, value in zip(
                            ("", "_ci_low", "_ci_high"), (true_result.metrics[metric], *true_result.intervals[metric])
                        )
                    },
                    **analysed,
                    "kappa_valid_grounded": (
                        cohen_kappa(values[scored] >= valid_at, grounded[scored])
                        if valid_at is not None
                        else float("nan")
                    ),
                    "mean_signal_right": float(np.mean(values[scored])) if scored.any() else float("nan"),
                    "n_pred_mismatch": int((mine["pred"] != found["pred"]).sum()),
                    "threshold": threshold,
                    "twins_agreement": agreement,
                }
            )
    return rows
