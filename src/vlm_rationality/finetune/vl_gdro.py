"""VL-GDRO, RaVL's fourth baseline (Appendix D.2): λ·L_CL + (1 − λ)·group DRO (Sagawa et al., ICLR 2020) on the
zero-shot logits, λ 0.8, over Stage 1's (class, spurious region present) groups, with the group-balanced sampler.

Group DRO keeps a weight q_g per group: each step q_g ← q_g·exp(η·L_g) with L_g the batch's mean loss over group g
(0 for a group absent from the batch), then q is normalised, and the loss is Σ_g q_g·L_g, so the groups that stay
worst take over the objective. η is `step_size` (the authors' 0.01); q starts uniform over every possible group."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm_rationality.finetune.base import FINETUNE_METHODS
from vlm_rationality.finetune.upsample import region_groups
from vlm_rationality.finetune.vl_upsample import UpsampledContrastiveFineTune


class GroupDRO:
    """The online group weights q and the robust loss of one step."""

    def __init__(self, groups: int, step_size: float) -> None:
        self.q = torch.full((groups,), 1.0 / groups)
        self.step_size = step_size

    def __call__(self, losses: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Per-sample losses [B] and their groups [B] -> Σ_g q_g·L_g, after updating q with this batch's L_g."""
        count = torch.bincount(groups, minlength=len(self.q)).to(losses)
        group_loss = torch.zeros_like(count).index_add(0, groups, losses) / count.clamp(min=1)
        q = self.q.to(losses) * torch.exp(self.step_size * group_loss.detach())
        self.q = q / q.sum()
        return group_loss @ self.q


@FINETUNE_METHODS.register(
    "vl-gdro",
    trains=True,
    head="prompt",
    regions=True,
    selects=True,
    options={
        "spurious_clusters": {"type": "integer", "minimum": 1, "default": 1},
        "weight": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.8, "description": "λ on L_CL"},
        "step_size": {"type": "number", "exclusiveMinimum": 0, "default": 0.01, "description": "η of q's update"},
    },
)
class VisionLanguageGroupDRO(UpsampledContrastiveFineTune):
    def prepare(self, split, classes: int) -> None:
        self.groups = region_groups(self.config, split)
        self.dro = GroupDRO(2 * classes, self.config["step_size"])

    def classification_loss(self, logits, index, target):
        return self.dro(F.cross_entropy(logits, target, reduction="none"), self.groups[index].to(logits.device))
