"""Mass lift: RMA ÷ the mask's share of the image, how much more heat lies on the object than a flat map puts there.

A flat map scores RMA = the mask's area, so RMA alone ranks a large object above a small one whatever the map
does; the lift removes that (1: no better than flat)."""

from __future__ import annotations

import numpy as np

from vlm_rationality.metrics.signals.base import SIGNALS, Evidence
from vlm_rationality.metrics.signals.rma import rma


@SIGNALS.register("mass_lift", reads="heatmap", masks="variants", valid_at=1.0)
def mass_lift(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    area = np.asarray(masks).reshape(len(masks), -1).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, rma(evidence, masks) / area, np.nan)
