"""Model adapters; importing this package registers them."""

from vlm_rationality.models import albef, blip, open_clip_adapter  # noqa: F401  (register the adapters)
from vlm_rationality.models.base import MODEL_ADAPTERS, Preprocess, VisionLanguageModel, build_model
from vlm_rationality.models.heads import ImageClassifier, build_classifier, prompt_head

__all__ = [
    "MODEL_ADAPTERS", "Preprocess", "VisionLanguageModel", "build_model", "ImageClassifier", "build_classifier",
    "prompt_head",
]
