"""The pointing game (Zhang et al., 2018): 1 where the map's peak (as RMA reads it) lies inside the mask, else 0; a
plateau at the peak counts as a hit where any of its pixels does (Quantus's convention)."""

from __future__ import annotations

import numpy as np
import torch

from vlm_rationality.metrics.signals.base import SIGNALS, Evidence, defined


@SIGNALS.register("pointing_game", reads="heatmap", masks="exact", valid_at=0.5)
def pointing_game(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    heat, ok = evidence.heat(tuple(masks.shape[-2:]))
    flat = heat.flatten(1)
    peak = flat == flat.amax(dim=1, keepdim=True)
    hit = (peak & torch.from_numpy(np.asarray(masks, bool).reshape(len(masks), -1))).any(dim=1)
    return defined(hit.double(), ok, masks)
