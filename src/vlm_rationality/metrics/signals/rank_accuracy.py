"""Relevance Rank Accuracy (Arras et al., 2022): the share of the |M| highest-ranked pixels of the map (as RMA reads
it) that lie inside the mask M. Ties are broken by pixel order (a stable sort), as a rank must break them somehow."""

from __future__ import annotations

import numpy as np
import torch

from vlm_rationality.metrics.signals.base import SIGNALS, Evidence, defined


@SIGNALS.register("rank_accuracy", reads="heatmap", masks="exact", valid_at="threshold")
def rank_accuracy(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    heat, ok = evidence.heat(tuple(masks.shape[-2:]))
    flat_masks = torch.from_numpy(np.asarray(masks, bool).reshape(len(masks), -1))
    order = torch.argsort(-heat.flatten(1), dim=1, stable=True)
    ranked = torch.gather(flat_masks, 1, order)
    size = flat_masks.sum(dim=1)
    top = torch.arange(ranked.shape[1])[None, :] < size[:, None]
    hits = (ranked & top).sum(dim=1).double()
    return defined(hits / size.clamp(min=1), ok, masks)
