"""Object-only retention: 1 where the prediction survives replacing the background by its mean colour, else 0.

One forward per sample (the twins job runs it), no other image needed: an intervention that works on real data with
masks, where no counterfactual background exists."""

from __future__ import annotations

import numpy as np

from vlm_rationality.artefacts import NO_PREDICTION
from vlm_rationality.metrics.signals.base import SIGNALS, Evidence


@SIGNALS.register("object_retention", reads="twins", masks="none", valid_at=0.5)
def object_retention(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    kept = (evidence.object_pred == evidence.pred).astype(np.float64)
    return np.where((evidence.pred != NO_PREDICTION) & (evidence.object_pred != NO_PREDICTION), kept, np.nan)
