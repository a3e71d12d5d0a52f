"""Relevance Mass Accuracy (the paper's signal): the share of the map's mass on the mask, Σ(H⊙M) / ΣH.

On the box mask this is also the energy-based pointing game of Score-CAM (Wang et al., 2020), so that one is not
registered twice."""

from __future__ import annotations

import numpy as np
import torch

from vlm_rationality.metrics.rma import relevance_mass_accuracy
from vlm_rationality.metrics.signals.base import SIGNALS, Evidence


@SIGNALS.register("rma", reads="heatmap", masks="variants", valid_at="threshold")
def rma(evidence: Evidence, masks: np.ndarray) -> np.ndarray:
    return relevance_mass_accuracy(evidence.relevance, torch.from_numpy(masks))[0].double().numpy()
