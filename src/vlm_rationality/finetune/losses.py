"""Contrastive image-text losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (image, text) pairs where equal `groups` are all positives.

    CLIP's loss assumes one positive per row; with few classes (FLCP's class prompts) or repeated captions
    a batch holds many identical texts, and treating them as negatives would push apart what is the same.
    """
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = scale * image @ text.T
    positives = (groups[:, None] == groups[None, :]).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
