"""Shape bias on cue-conflict images (Geirhos et al.): of the decisions that name either the image's shape class
or its texture class, the share that name the shape. Images whose shape and texture classes coincide carry no
conflict and are dropped (counted).

ImageNet-1k classifiers decide among the 16 entry-level categories of the cue-conflict stimuli by the mean
probability of each category's member classes (`imagenet16.py`), then argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlm_rationality.imagenet16 import imagenet16


def category_probabilities(probs: np.ndarray, mapping: dict[str, list[int]] | None = None) -> np.ndarray:
    """[N, 1000] class probabilities -> [N, 16] mean member probability per category (mapping order)."""
    mapping = imagenet16() if mapping is None else mapping
    probs = np.asarray(probs, np.float64)
    return np.stack([probs[:, members].mean(axis=1) for members in mapping.values()], axis=1)


@dataclass(frozen=True)
class ShapeBias:
    shape_bias: float  # shape decisions / (shape + texture decisions); NaN when there are none
    shape_decisions: int
    texture_decisions: int
    other_decisions: int
    dropped_no_conflict: int


def shape_bias(decisions: np.ndarray, shapes: np.ndarray, textures: np.ndarray) -> ShapeBias:
    """Shape bias of class decisions against each image's shape and texture class (any comparable labels)."""
    decisions, shapes, textures = (np.asarray(a) for a in (decisions, shapes, textures))
    conflict = shapes != textures
    shape = int(np.sum(conflict & (decisions == shapes)))
    texture = int(np.sum(conflict & (decisions == textures)))
    return ShapeBias(
        shape / (shape + texture) if shape + texture else float("nan"),
        shape,
        texture,
        int(conflict.sum()) - shape - texture,
        int((~conflict).sum()),
    )
