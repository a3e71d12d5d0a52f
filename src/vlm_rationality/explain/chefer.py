"""Chefer et al. (2021) gradient-weighted attention rollout, batched.

For each vision block l the relevance update is C_l = mean_heads(clamp(∇A_l ⊙ A_l, min=0)) and the rollout
is R = (I + C_L) … (I + C_s), s = `start_block`. Only R[CLS, patches] is needed, so a row vector is carried
from the last block down (v ← v + v·C_l): O(N²) per block instead of the O(N³) matrix product.

Samples in a batch are independent, so one backward of Σᵢ logitᵢ[targetᵢ] gives every ∂logitᵢ/∂Aᵢ at once:
one forward and one backward per batch, whatever the batch size.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from vlm_rationality.models.heads import ImageClassifier
from vlm_rationality.registry import Registry

Target = Literal["label", "pred"]


@dataclass
class Explanation:
    logits: torch.Tensor  # float32 [B, C], detached
    relevance: torch.Tensor  # float32 [B, gh, gw], the patch-grid heatmap
    explained_class: torch.Tensor  # int64 [B]


HeatmapMethod = Callable[..., Explanation]
HEATMAP_METHODS: Registry[HeatmapMethod] = Registry("heatmap method")


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return nullcontext()
    if device.type != "cuda":
        raise ValueError("mixed-precision heatmaps (amp) need a CUDA device; set amp: null on CPU")
    return torch.autocast("cuda", dtype=amp_dtype)


def _targets(logits: torch.Tensor, labels: torch.Tensor, target: Target) -> torch.Tensor:
    if target == "label":
        return labels
    if target == "pred":
        return logits.argmax(dim=1)
    raise KeyError(f"unknown heatmap target {target!r}; use 'label' (ground truth) or 'pred'")


def _check_start_block(start_block: int, blocks: int) -> None:
    if not 0 <= start_block < blocks:
        raise ValueError(f"heatmap start_block {start_block} is outside the model's {blocks} vision blocks")


@HEATMAP_METHODS.register("chefer")
def chefer_relevance(
    classifier: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: Target = "label",
    start_block: int = 0,
    amp_dtype: torch.dtype | None = None,
) -> Explanation:
    """Batched rollout for preprocessed `images` [B, 3, S, S]; one forward, one backward."""
    model = classifier.model
    blocks = len(model.vision_blocks())
    _check_start_block(start_block, blocks)
    # The input carries the graph, so frozen weights still give attention probabilities a grad_fn.
    images = images.detach().requires_grad_(True)
    with torch.enable_grad(), _autocast(images.device, amp_dtype), model.capture_attention() as attention:
        logits = classifier(images).float()
    if len(attention) != blocks:
        raise RuntimeError(f"captured {len(attention)} attention maps for {blocks} vision blocks")
    explained = _targets(logits, labels, target)
    probs = attention[start_block:]
    grads = torch.autograd.grad(logits.gather(1, explained[:, None]).sum(), probs)

    batch, tokens = images.shape[0], probs[0].shape[-1]
    row = torch.zeros(batch, 1, tokens, device=images.device, dtype=torch.float32)
    row[:, 0, 0] = 1.0
    for attn, grad in zip(reversed(probs), reversed(grads)):
        cam = (grad.float() * attn.detach().float()).clamp_(min=0).mean(dim=1)
        row = row + torch.bmm(row, cam)
    grid = model.grid_size
    relevance = row[:, 0, 1:].reshape(batch, *grid)
    return Explanation(logits.detach(), relevance, explained)


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
    _check_start_block(start_block, blocks)
    logits_all, maps, explained_all = [], [], []
    for image, label in zip(images, labels):
        x = image[None].detach().requires_grad_(True)
        with torch.enable_grad(), model.capture_attention() as attention:
            logits = classifier(x).float()
        explained = _targets(logits, label[None], target)
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
