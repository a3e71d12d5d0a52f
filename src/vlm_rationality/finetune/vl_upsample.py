"""Upsampled VLM fine-tuning, RaVL's second baseline (Appendix D.2): the CLIP objective with the sampler that
balances Stage 1's (class, spurious region present) groups (upsample.py's groups, on the CLIP objective instead of
cross-entropy)."""

from __future__ import annotations

import torch

from vlm_rationality.finetune.base import FINETUNE_METHODS
from vlm_rationality.finetune.upsample import group_weights, region_groups
from vlm_rationality.finetune.vl_ft import ContrastiveFineTune


@FINETUNE_METHODS.register(
    "vl-upsample",
    trains=True,
    head="prompt",
    regions=True,
    selects=True,
    options={
        "spurious_clusters": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "regions of the first this many discovered candidates by gap are spurious (RaVL: one)",
        },
    },
)
class UpsampledContrastiveFineTune(ContrastiveFineTune):
    """L_CL, each (class, spurious region present) group drawn equally often."""

    def sample_weights(self, split) -> torch.Tensor:
        return group_weights(region_groups(self.config, split))
