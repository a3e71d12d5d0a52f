"""Model adapters: each registers itself, and `build_model` imports the one a config names (registry.py)."""

from vlm_rationality.models.base import MODEL_ADAPTERS, Preprocess, VisionLanguageModel, build_model
from vlm_rationality.models.heads import ImageClassifier, build_classifier, prompt_head

__all__ = [
    "MODEL_ADAPTERS",
    "Preprocess",
    "VisionLanguageModel",
    "build_model",
    "ImageClassifier",
    "build_classifier",
    "prompt_head",
]
