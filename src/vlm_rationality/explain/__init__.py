"""Heatmap methods behind one contract (base.py); importing this package registers every method file."""

from vlm_rationality.explain import chefer, gradcam, rollout  # noqa: F401  (each registers itself)
from vlm_rationality.explain.base import HEATMAP_METHODS, Explanation, HeatmapMethod, Target

__all__ = ["HEATMAP_METHODS", "Explanation", "HeatmapMethod", "Target"]
