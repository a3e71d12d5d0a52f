"""Token-level RMA: the mass on the mask read on the patch grid itself, each patch weighted by the share of its
pixels inside the mask; no bilinear upsampling (which spills a boundary patch's heat past the painted pixels).

`token_rma` min-max normalises the grid as RMA does; `token_rma_raw` does not (the map's own zero)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vlm_rationality.metrics.rma import minmax_normalize
from vlm_rationality.metrics.signals.base import SIGNALS, Evidence, defined, map_varies


def patch_shares(masks: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """float [N, gh, gw]: the share of each patch's pixels inside the mask (the input divides into whole patches)."""
    height, width = masks.shape[-2:]
    if height % grid[0] or width % grid[1]:
        raise ValueError(f"a {height}x{width} mask does not divide into a {grid[0]}x{grid[1]} patch grid")
    return F.avg_pool2d(
        torch.from_numpy(np.asarray(masks, np.float32))[:, None], (height // grid[0], width // grid[1])
    )[:, 0]


def _token_mass(evidence: Evidence, masks: np.ndarray, normalise: bool) -> np.ndarray:
    relevance = torch.nan_to_num(evidence.relevance.float())
    ok = map_varies(evidence.relevance)
    if normalise:
        relevance, _ = minmax_normalize(relevance)
    else:
        ok &= (relevance >= 0).flatten(1).all(dim=1)  # a share of mass needs a non-negative map
    inside = (relevance * patch_shares(masks, tuple(relevance.shape[-2:]))).sum(dim=(1, 2))
    total = relevance.sum(dim=(1, 2))
    ok &= total > 0
    return defined(inside / torch.where(total > 0, total, torch.ones_like(total)), ok, masks)


@SIGNALS.register("token_rma", reads="heatmap", masks="exact", valid_at="threshold")
def token_rma(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    return _token_mass(evidence, masks, normalise=True)


@SIGNALS.register("token_rma_raw", reads="heatmap", masks="exact", valid_at="threshold")
def token_rma_raw(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    return _token_mass(evidence, masks, normalise=False)
