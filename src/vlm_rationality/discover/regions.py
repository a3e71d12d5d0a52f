"""The image regions RaVL's discovery embeds and clusters, from a prepared sample's object mask.

Where the object is known exactly (the synthetic benchmark's masks, the real datasets' boxes, contours and
segmentations after the eval transform), an image has one tight box around the object and a few boxes that touch
no object pixel: their feature is the background, which on the synthetic benchmark is the texture, the spurious
cue with its known identity. An image without an object mask gets a grid. Boxes are half-open pixel rectangles
(x0, y0, x1, y1) on the prepared image.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]


def object_box(mask: np.ndarray) -> Box | None:
    """The tight box around the mask's pixels; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def background_boxes(mask: np.ndarray, count: int, side: int, rng: np.random.Generator) -> list[Box]:
    """Up to `count` squares of `side` pixels that touch no mask pixel, placed at random without overlapping each
    other; fewer where the background has no room (the caller counts them)."""
    height, width = mask.shape
    if side > min(height, width):
        raise ValueError(f"a background box of {side} px does not fit a {width}x{height} image")
    # A square at (x, y) is free when the mask's summed-area table says it holds no object pixel.
    table = np.pad(mask.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    free = (table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]) == 0
    boxes: list[Box] = []
    while len(boxes) < count and free.any():
        candidates = np.argwhere(free)
        y, x = (int(v) for v in candidates[rng.integers(len(candidates))])
        boxes.append((x, y, x + side, y + side))
        free[max(0, y - side + 1) : y + side, max(0, x - side + 1) : x + side] = False  # squares overlapping this one
    return boxes


def grid_boxes(height: int, width: int, cells: int) -> list[Box]:
    """A `cells` x `cells` grid over the image, row by row (the last row and column take the remainder)."""
    ys, xs = np.linspace(0, height, cells + 1).round().astype(int), np.linspace(0, width, cells + 1).round().astype(int)
    return [(int(xs[j]), int(ys[i]), int(xs[j + 1]), int(ys[i + 1])) for i in range(cells) for j in range(cells)]
