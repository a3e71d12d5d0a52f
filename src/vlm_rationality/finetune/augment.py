"""Training augmentation on the device, batched: random resized crop and horizontal flip.

Shards hold the eval transform only; fine-tuning methods that ask for `augment: true` see a fresh random
crop (scale 0.35–1, aspect 3/4–4/3, resized back to S) and a flip of every image in every step, drawn from
torch's seeded generator. One `affine_grid` + `grid_sample` does the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SCALE = (0.35, 1.0)
RATIO = (3 / 4, 4 / 3)


def random_resized_crop_flip(images: torch.Tensor) -> torch.Tensor:
    """Float images [B, C, S, S] -> augmented [B, C, S, S] (bilinear)."""
    batch, device = images.shape[0], images.device
    area = torch.empty(batch, device=device).uniform_(*SCALE)
    log_ratio = torch.empty(batch, device=device).uniform_(math.log(RATIO[0]), math.log(RATIO[1]))
    ratio = log_ratio.exp()
    width = (area * ratio).sqrt().clamp(max=1.0)  # as fractions of the image side
    height = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(batch, device=device) * 2 - 1) * (1 - width)  # centre in [-1, 1] keeping the crop inside
    cy = (torch.rand(batch, device=device) * 2 - 1) * (1 - height)
    flip = torch.where(torch.rand(batch, device=device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
