"""Fine-tuning methods on one training loop: each method file registers itself, and the registry imports the one a
config names (registry.py)."""

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, build_method

__all__ = ["FINETUNE_METHODS", "Method", "build_method"]
