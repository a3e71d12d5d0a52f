"""Relevance Mass Accuracy, exactly as the paper computes it, batched on the heatmaps' device.

The patch-grid heatmap is upsampled bilinearly to the input size and min-max normalised, then
RMA = Σ(H⊙M) / ΣH. An empty mask, a non-finite heatmap, ΣH = 0 (an all-zero rollout) or a constant heatmap
(min-max undefined) has no defined RMA: such samples get NaN and a status naming why, and are excluded from
PT/IR, never coerced to 0 or 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm_rationality.artefacts import RMA_STATUSES as STATUSES


def upsample(relevance: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, gh, gw] patch grid -> [B, H, W] input resolution, bilinear (align_corners=False, as in Chefer's code)."""
    return F.interpolate(relevance[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def minmax_normalize(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (h - min) / (max - min); also returns which samples had a non-zero span."""
    low = heatmaps.amin(dim=(1, 2), keepdim=True)
    span = heatmaps.amax(dim=(1, 2), keepdim=True) - low
    varied = span.flatten() > 0
    return (heatmaps - low) / torch.where(span > 0, span, torch.ones_like(span)), varied


def relevance_mass_accuracy(relevance: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RMA per sample (NaN where undefined) and a status code per sample (index into STATUSES)."""
    finite = torch.isfinite(relevance).flatten(1).all(dim=1)
    relevance = torch.nan_to_num(relevance.float(), nan=0.0, posinf=0.0, neginf=0.0)
    grid = relevance.flatten(1)
    zero_mass = grid.abs().sum(dim=1) == 0  # e.g. a rollout whose gradients were all negative
    heat, varied = minmax_normalize(upsample(relevance, tuple(masks.shape[-2:])))
    # Constancy is decided on the patch grid: upsampling a constant grid in float32 leaves a rounding span near
    # 1e-8 that min-max would blow up into a meaningless map.
    varied &= grid.amax(dim=1) > grid.amin(dim=1)
    inside = (heat * masks.to(heat.dtype)).sum(dim=(1, 2))
    mass = heat.sum(dim=(1, 2))
    has_object = masks.flatten(1).any(dim=1)

    status = torch.zeros(relevance.shape[0], dtype=torch.int8, device=relevance.device)
    # Later assignments win, so the most fundamental reason is the one reported.
    status[~varied] = STATUSES.index("constant_heatmap")
    status[zero_mass] = STATUSES.index("zero_mass")
    status[~finite] = STATUSES.index("nonfinite_heatmap")
    status[~has_object] = STATUSES.index("empty_mask")
    rma = torch.where(status == 0, inside / torch.where(mass > 0, mass, torch.ones_like(mass)), torch.nan)
    return rma, status
