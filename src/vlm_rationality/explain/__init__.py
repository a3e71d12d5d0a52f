"""Heatmap methods behind one contract (base.py): each method file registers itself, and the registry imports the
one a job names (registry.py)."""

from vlm_rationality.explain.base import HEATMAP_METHODS, Explanation, HeatmapMethod, Target

__all__ = ["HEATMAP_METHODS", "Explanation", "HeatmapMethod", "Target"]
