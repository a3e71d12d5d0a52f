"""The explain stage: a group of prepared shards through one (model, method, heatmap method) -> one heatmap file."""

from __future__ import annotations

from typing import Any, Sequence

from vlm_rationality.device import resolve_device
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.models.base import build_model
from vlm_rationality.models.checkpoint import load_classifier
from vlm_rationality.models.heads import ImageClassifier, build_classifier


def load_for_explain(model_spec: dict[str, Any], prompts: Sequence[str], checkpoint: str | None) -> ImageClassifier:
    """A fine-tuned method's checkpoint holds its classifier; without one (ZS) the base model's prompt head."""
    if checkpoint:
        return load_classifier(model_spec, checkpoint)
    return build_classifier(build_model(model_spec).eval(), "prompt", prompts)


def explain(
    model_spec: dict[str, Any], prompts: Sequence[str], checkpoint: str | None, heatmaps: dict[str, Any],
    in_shards: Sequence[str], out: str, device: str, keys: dict[str, str], config_hash: str,
) -> dict[str, Any]:
    settings = HeatmapSettings(**heatmaps)  # checked before the model loads
    classifier = load_for_explain(model_spec, prompts, checkpoint)  # loaded once for the whole group
    return explain_shards(classifier, in_shards, out, settings, config_hash, resolve_device(device), keys)
