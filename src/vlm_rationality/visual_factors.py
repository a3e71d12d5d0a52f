"""The shape of visual-factor annotations: what a dataset adapter makes (data/) and the factor table reads
(metrics/factors.py), so it sits below both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Factors:
    """Visual-factor annotations of some samples, ImageNet-X's way: per factor, whether each sample shows it."""

    annotated: np.ndarray  # bool [N]: the sample has an annotation at all (an unannotated one is in no factor)
    shows: dict[str, np.ndarray]  # factor -> bool [N]
