"""Attention rollout (Abnar & Zuidema, 2020): gradient-free and class-agnostic, batched.

Per block, the heads' attention is averaged, the identity added for the residual path and rows renormalised:
Â_l = (mean_heads A_l + I) / 2 (rows of A sum to 1). The rollout is Â_L … Â_s and its CLS row over the patches
is the map, carried as a row vector from the last block down. The forward runs without autograd.
"""

from __future__ import annotations

import torch

from vlm_rationality.explain.base import HEATMAP_METHODS, HeatmapMethod, cls_row_rollout


@HEATMAP_METHODS.register("rollout")
class Rollout(HeatmapMethod):
    uses_gradients = False

    def record(self, model):
        return model.capture_attention(self.compiled)

    def relevance(self, model, selected, recorded):
        maps = []
        for attn in recorded[self.start_block :]:
            mixed = attn.float().mean(dim=1) + torch.eye(attn.shape[-1], device=attn.device)
            maps.append(mixed / mixed.sum(dim=-1, keepdim=True))
        return cls_row_rollout(maps, residual=False)[:, 1:]
