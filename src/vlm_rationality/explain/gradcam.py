"""Grad-CAM (Selvaraju et al., 2017) on a vision transformer's patch tokens, batched.

The feature map is the last block's input tokens after its first LayerNorm, the CLS token dropped and the
patches laid out on their grid; the channel weights are the gradients of the explained logit averaged over
the patches; the map is ReLU(Σ_c w_c · tokens_c). These are the tokens that still reach the CLS output: the
last block's *output* patch tokens have zero gradient, since only the CLS token is read out after it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from vlm_rationality.explain.base import HEATMAP_METHODS, HeatmapMethod


@HEATMAP_METHODS.register("gradcam")
class GradCAM(HeatmapMethod):
    """One forward, one backward per batch; `start_block` does not apply (the last block is read)."""

    @contextmanager
    def record(self, model):
        recorded: list[torch.Tensor] = []
        handle = model.vision_block_norms()[-1].register_forward_hook(
            lambda module, inputs, output: recorded.append(output)
        )
        try:
            yield recorded
        finally:
            handle.remove()

    def relevance(self, model, selected, recorded):
        if len(recorded) != 1:
            raise RuntimeError(f"Grad-CAM recorded {len(recorded)} token maps of the last block, expected 1")
        tokens = recorded[0]
        patches = model.grid_size[0] * model.grid_size[1]
        if tokens.dim() != 3 or tokens.shape[1] != patches + 1:
            raise RuntimeError(f"Grad-CAM expects tokens [B, 1 + {patches}, D], got {tuple(tokens.shape)}")
        (grad,) = torch.autograd.grad(selected, [tokens])
        weights = grad[:, 1:].float().mean(dim=1, keepdim=True)  # [B, 1, D]
        return (weights * tokens[:, 1:].detach().float()).sum(dim=-1).clamp_(min=0)
