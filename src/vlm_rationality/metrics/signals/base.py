"""The rationale-signal contract: a per-sample score that claims a right prediction rests on the object.

A signal reads what the explain and twins stages stored (the patch-grid map, the object mask under a variant, the
logits, the prediction on the object alone) and returns a float per sample, NaN where undefined. The validity stage
asks of each one whether it ranks object-grounded right predictions above the others within a class, and beyond
what confidence alone says. A new signal is one file that registers a function here, stating as literals what it
reads (`reads`: "heatmap", "logits", "twins" or "mask"), which masks it is computed under (`masks`: "variants" = every
variant of `twins.masks`, "exact", or "none") and the value from which it calls the evidence valid (`valid_at`: a
number, "threshold" for the score's RMA threshold, or None where no threshold is natural).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from vlm_rationality.metrics.rma import minmax_normalize, upsample
from vlm_rationality.registry import Registry


def map_varies(relevance: torch.Tensor) -> torch.Tensor:
    """bool [N]: the patch-grid map is finite and not constant, so min-max normalising it is defined (decided on the
    grid, as RMA decides it: an upsampled constant grid keeps a rounding span that min-max would blow up)."""
    grid = relevance.flatten(1)
    return torch.isfinite(grid).all(dim=1) & (torch.nan_to_num(grid).amax(dim=1) > torch.nan_to_num(grid).amin(dim=1))


@dataclass
class Evidence:
    """What one (dataset, model, method, heatmap method) stored about its scored samples."""

    relevance: torch.Tensor  # float32 [N, gh, gw]: the patch-grid heatmap
    logits: np.ndarray  # float32 [N, C]
    pred: np.ndarray  # int [N]
    object_pred: np.ndarray  # int [N]: the prediction on the object alone (the twins job)
    _heat: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def heat(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The map as RMA reads it (bilinear to the input size, min-max normalised) and which samples have a
        non-constant map; computed once for every signal that reads it."""
        if size not in self._heat:
            heat, _ = minmax_normalize(upsample(torch.nan_to_num(self.relevance.float()), size))
            self._heat[size] = heat, map_varies(self.relevance)
        return self._heat[size]


Signal = Callable[[Evidence, np.ndarray], np.ndarray]  # (evidence, bool masks [N, H, W]) -> float64 [N]

SIGNALS: Registry[Signal] = Registry("rationale signal", ("vlm_rationality.metrics.signals", "SIGNALS"))


def defined(values: torch.Tensor, ok: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    """float64 [N] with NaN where the map is constant or non-finite, or the mask is empty."""
    has_object = torch.from_numpy(np.asarray(masks).reshape(len(masks), -1).any(axis=1))
    return torch.where(ok & has_object, values.double(), torch.nan).numpy()
