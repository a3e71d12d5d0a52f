"""Does the rationale metric measure what it claims? RMA against the twins' ground truth, per mask variant.

For every (dataset, model, method, heatmap method) on the clean scored split and every mask variant
(data/masks.py), RMA is recomputed from the stored patch-grid heatmaps (metrics/rma.py, the same computation the
explain stage runs), and set beside the truth of the twins (metrics/grounding.py): PT beside PT*, IR beside IR*,
and per sample, among right predictions, the AUROC of RMA for object-groundedness and Cohen's κ of RMA-validity
against it. A metric that tracks the truth has an AUROC well above 0.5 and moves with PT* when training changes.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch

from vlm_rationality.artefacts import NO_PREDICTION, read_heatmaps, read_prepared
from vlm_rationality.data.masks import mask_variant
from vlm_rationality.metrics.agreement import auroc, cohen_kappa
from vlm_rationality.metrics.grounding import object_grounded
from vlm_rationality.metrics.rationality import rationality
from vlm_rationality.metrics.rma import relevance_mass_accuracy
from vlm_rationality.metrics.score import twin_columns

KEYS = ("dataset", "model", "method", "heatmap_method")


def _masks(paths: Sequence[str]) -> dict[str, np.ndarray]:
    return {i: m for path in paths for i, m in zip(*(read_prepared(path)[k] for k in ("sample_id", "mask")))}


def variant_rma(heatmap_paths: Sequence[str | os.PathLike], variants: Sequence[str]) -> dict[tuple, dict[str, Any]]:
    """(dataset, model, method, heatmap method) of each clean heatmap file -> sample ids, labels, predictions and
    the RMA under each mask variant (NaN where undefined)."""
    found: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for path in heatmap_paths:
        meta, table = read_heatmaps(path, ["sample_id", "label", "pred", "heatmap"])
        if meta["keys"]["shift"] != "clean":
            continue
        key = tuple(meta["keys"][k] for k in KEYS)
        ids = table.column("sample_id").to_pylist()
        masks = _masks(meta["source_shards"])
        exact = np.stack([masks[i] for i in ids]) if ids else np.zeros((0, 1, 1), bool)
        grid = np.asarray(table.column("heatmap").combine_chunks().flatten().to_numpy(zero_copy_only=False), np.float32)
        relevance = torch.from_numpy(grid.reshape(len(ids), *meta["grid_size"]))
        entry = found[key]
        entry["sample_id"] += ids
        entry["label"].append(table.column("label").to_numpy())
        entry["pred"].append(table.column("pred").to_numpy())
        for variant in variants:
            rma, _ = relevance_mass_accuracy(relevance, torch.from_numpy(mask_variant(exact, variant)))
            entry[variant].append(rma.numpy())
    return {
        key: {name: values if name == "sample_id" else np.concatenate(values) for name, values in entry.items()}
        for key, entry in found.items()
    }


def validity_rows(
    heatmap_paths: Sequence[str | os.PathLike],
    twins_paths: Sequence[str | os.PathLike],
    variants: Sequence[str],
    threshold: float = 0.5,
    agreement: float = 1.0,
) -> list[dict[str, Any]]:
    """One row per (dataset, model, method, heatmap method, mask variant) that has both heatmaps and twins."""
    truth = twin_columns(twins_paths)
    rows = []
    for key, found in sorted(variant_rma(heatmap_paths, variants).items()):
        twins = truth.get(key[:3])
        if twins is None:
            continue
        position = {sample_id: i for i, sample_id in enumerate(twins["sample_id"])}
        missing = [i for i in found["sample_id"] if i not in position]
        if missing:
            raise ValueError(
                f"{dict(zip(KEYS, key))}: {len(missing)} explained samples have no twins (e.g. "
                f"{missing[0]}); rerun the twins jobs"
            )
        order = np.asarray([position[i] for i in found["sample_id"]], dtype=np.int64)
        grounded = object_grounded(twins["pred"][order], twins["twin_pred"][order], agreement)
        predicted = found["pred"] != NO_PREDICTION
        correct = found["pred"] == found["label"]
        truth_result = rationality(correct[predicted], grounded[predicted].astype(np.float64), 0.5, 0)
        for variant in variants:
            rma = found[variant]
            result = rationality(correct[predicted], rma[predicted], threshold, 0)
            right = predicted & correct & ~np.isnan(rma)
            rows.append(
                {
                    **dict(zip(KEYS, key)),
                    "mask": variant,
                    "n": int(predicted.sum()),
                    "n_right": int(right.sum()),
                    "accuracy": result.metrics["accuracy"],
                    "prediction_trustworthiness": result.metrics["prediction_trustworthiness"],
                    "pt_true": truth_result.metrics["prediction_trustworthiness"],
                    "inference_reliability": result.metrics["inference_reliability"],
                    "ir_true": truth_result.metrics["inference_reliability"],
                    "auroc_rma_grounded": auroc(rma[right], grounded[right]),
                    "kappa_valid_grounded": cohen_kappa(rma[right] >= threshold, grounded[right]),
                    "mean_rma_right": float(np.mean(rma[right])) if right.any() else float("nan"),
                    "n_pred_mismatch": int((twins["pred"][order] != found["pred"]).sum()),
                    "threshold": threshold,
                    "twins_agreement": agreement,
                }
            )
    return rows
