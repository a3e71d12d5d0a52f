"""Zero-shot: no training; classify with the class-prompt text embeddings."""

from __future__ import annotations

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method
from vlm_rationality.models.heads import build_classifier


@FINETUNE_METHODS.register("zs", trains=False, head="prompt")
class ZeroShot(Method):
    """The base model's prompt head as it is: nothing trains."""

    def fit(self, model, prompts, split, device):
        return build_classifier(model, "prompt", prompts), {}
