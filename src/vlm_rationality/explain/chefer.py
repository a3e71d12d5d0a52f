"""Chefer et al. (2021) gradient-weighted attention rollout, batched.

For each vision block l the relevance update is C_l = mean_heads(clamp(∇A_l ⊙ A_l, min=0)) and the rollout
is R = (I + C_L) … (I + C_s), s = `start_block`. Only R[CLS, patches] is needed, so a row vector is carried
from the last block down (v ← v + v·C_l): O(N²) per block instead of the O(N³) matrix product.
"""

from __future__ import annotations

import torch

from vlm_rationality.explain.base import (
    HEATMAP_METHODS,
    Explanation,
    HeatmapMethod,
    Target,
    check_start_block,
    cls_row_rollout,
    explained_classes,
)
from vlm_rationality.models.heads import ImageClassifier


@HEATMAP_METHODS.register("chefer")
class Chefer(HeatmapMethod):
    """Gradient-weighted attention rollout of the explained logit: one forward, one backward per batch."""

    def record(self, model):
        return model.capture_attention(self.compiled)

    def relevance(self, model, selected, recorded):
        blocks = len(model.vision_blocks())
        if len(recorded) != blocks:
            raise RuntimeError(f"captured {len(recorded)} attention maps for {blocks} vision blocks")
        probs = recorded[self.start_block :]
        grads = torch.autograd.grad(selected, probs)
        cams = [(grad.float() * attn.detach().float()).clamp_(min=0).mean(dim=1) for attn, grad in zip(probs, grads)]
        return cls_row_rollout(cams, residual=True)[:, 1:]


def chefer_relevance_per_sample(
    classifier: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: Target = "label",
    start_block: int = 0,
) -> Explanation:
    """The original recipe, one image at a time: a gradient per block and the full N×N rollout matrix.

    Only a test oracle and the benchmark's baseline; never used by the pipeline.
    """
    model = classifier.model
    blocks = len(model.vision_blocks())
    start_block = check_start_block(start_block, blocks)
    logits_all, maps, explained_all = [], [], []
    for image, label in zip(images, labels):
        x = image[None].detach().requires_grad_(True)
        with torch.enable_grad(), model.capture_attention() as attention:
            logits = classifier(x).float()
            explained = explained_classes(logits, label[None], target)
            selected = logits[0, explained[0]]
            tokens = attention[0].shape[-1]
            rollout = torch.eye(tokens, device=x.device)
            for index in range(start_block, blocks):
                attn = attention[index]
                grad = torch.autograd.grad(selected, [attn], retain_graph=True)[0]
                cam = (grad * attn).clamp(min=0).mean(dim=1)[0]
                rollout = rollout + cam @ rollout
        logits_all.append(logits.detach())
        maps.append(rollout[0, 1:].detach().reshape(model.grid_size))
        explained_all.append(explained)
    return Explanation(torch.cat(logits_all), torch.stack(maps), torch.cat(explained_all))
