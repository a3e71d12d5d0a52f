"""Mask tolerance: how generously "on the object" is read, the same for every dataset.

RMA weighs a heatmap upsampled from the patch grid against the mask, so a map that sits on an object's boundary
spills part of its mass just outside the painted pixels. A variant loosens the mask: `exact` (the mask as the
dataset gives it), `dilate-N` (grown by N pixels: a (2N+1)² square around every object pixel) or `box` (the mask's
bounding box, the paper's own mask for ImageNet and Stanford Dogs). An empty mask stays empty under every variant.
"""

from __future__ import annotations

import re

import numpy as np

EXACT = "exact"
VARIANT = re.compile(r"^(exact|box|dilate-[1-9][0-9]*)$")


def check_variant(variant: str) -> str:
    if not VARIANT.match(variant):
        raise ValueError(f"unknown mask variant {variant!r}; use exact, box or dilate-N (N pixels, N >= 1)")
    return variant


def mask_variant(masks: np.ndarray, variant: str) -> np.ndarray:
    """bool [B, H, W] masks under `variant`."""
    masks = np.asarray(masks, dtype=bool)
    if check_variant(variant) == EXACT or masks.size == 0:
        return masks
    if variant == "box":
        out = np.zeros_like(masks)
        for b, mask in enumerate(masks):
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if len(rows):
                out[b, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
        return out
    return _grow(_grow(masks, int(variant.split("-")[1]), axis=1), int(variant.split("-")[1]), axis=2)


def _grow(masks: np.ndarray, pixels: int, axis: int) -> np.ndarray:
    """Each True spread `pixels` either way along `axis` (a square dilation is this along rows, then columns);
    numpy alone, so preparing a split imports nothing heavier."""
    size = masks.shape[axis]
    padded = np.pad(masks, [(pixels, pixels) if a == axis else (0, 0) for a in range(masks.ndim)])
    out = np.zeros_like(masks)
    for offset in range(2 * pixels + 1):
        out |= np.take(padded, np.arange(offset, offset + size), axis=axis)
    return out
