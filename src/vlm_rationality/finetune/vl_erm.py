"""VL-ERM, RaVL's third baseline (Appendix D.2): λ·L_CL + (1 − λ)·cross-entropy on the zero-shot logits (image
embedding against the frozen class texts), λ 0.8, with the group-balanced sampler of vl_upsample.py."""

from __future__ import annotations

import torch.nn.functional as F

from vlm_rationality.finetune.base import FINETUNE_METHODS
from vlm_rationality.finetune.vl_upsample import UpsampledContrastiveFineTune


@FINETUNE_METHODS.register(
    "vl-erm",
    trains=True,
    head="prompt",
    regions=True,
    selects=True,
    options={
        "spurious_clusters": {"type": "integer", "minimum": 1, "default": 1},
        "weight": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.8, "description": "λ on L_CL"},
    },
)
class VisionLanguageERM(UpsampledContrastiveFineTune):
    def classification_loss(self, logits, index, target):
        return F.cross_entropy(logits, target)
