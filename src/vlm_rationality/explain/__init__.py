"""Heatmap methods behind one contract (base.py): each method file registers itself, and the registry imports the
one a job names (registry.py). Empty of imports, so the stage's declaration (stage.py) reads without torch."""
