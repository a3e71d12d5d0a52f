"""The mask's area: the share of the image the object covers, a trivial baseline that reads no map and no logits.

A flat map scores RMA = this area, so any RMA-like signal that ranks grounded predictions no better than the area
alone says nothing about the map. Within class it varies only by pose and jitter; that it can still rank grounded
predictions is what a localisation signal must beat."""

from __future__ import annotations

import numpy as np

from vlm_rationality.metrics.signals.base import SIGNALS, Evidence


@SIGNALS.register("mask_area", reads="mask", masks="exact", valid_at=None)
def mask_area(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    area = np.asarray(masks).reshape(len(masks), -1).mean(axis=1)
    return np.where(area > 0, area, np.nan)
