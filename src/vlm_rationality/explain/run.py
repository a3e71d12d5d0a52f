"""The explain stage: a group of prepared shards through one (model, method, heatmap method) -> one heatmap file."""

from __future__ import annotations

from typing import Any, Sequence

from vlm_rationality.device import resolve_device
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.models.classifier_spec import ClassifierSpec


def explain(
    classifier_spec: ClassifierSpec,
    heatmaps: dict[str, Any],
    in_shards: Sequence[str],
    out: str,
    device: str,
    keys: dict[str, str],
    config_hash: str,
    workers: int = 0,
) -> dict[str, Any]:
    settings = HeatmapSettings(**heatmaps)  # checked before the model loads
    classifier = classifier_spec.load()  # loaded once for the whole group
    return explain_shards(classifier, in_shards, out, settings, config_hash, resolve_device(device), keys, workers)
