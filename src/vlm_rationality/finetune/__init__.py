"""Fine-tuning methods on one training loop; importing this package registers zs, lp, flcp, ft, clip_adapter, coop
and ravl."""

from vlm_rationality.finetune import clip_adapter, coop, flcp, ft, lp, ravl, zs  # noqa: F401  (each registers itself)
from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, build_method

__all__ = ["FINETUNE_METHODS", "Method", "build_method"]
