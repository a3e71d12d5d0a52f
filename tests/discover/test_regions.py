"""Regions from a prepared sample's mask: a tight object box, background boxes that touch no object pixel, a grid."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_rationality.data.synthetic import SyntheticSpec, generate
from vlm_rationality.discover.regions import background_boxes, grid_boxes, object_box


def test_the_object_box_is_tight_and_background_boxes_touch_no_object_pixel():
    spec = SyntheticSpec(image_size=64, num_classes=8, num_textures=8, seed=0)
    for index, sample in enumerate(generate(spec, "test", 20)):
        mask = sample.mask
        x0, y0, x1, y1 = object_box(mask)
        assert mask[y0:y1, x0:x1].sum() == mask.sum()  # every object pixel inside
        assert (
            mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any() and mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()
        )
        boxes = background_boxes(mask, 4, 16, np.random.default_rng(index))
        covered = np.zeros_like(mask, dtype=int)
        for bx0, by0, bx1, by1 in boxes:
            assert (bx1 - bx0, by1 - by0) == (16, 16) and 0 <= bx0 and bx1 <= 64 and 0 <= by0 and by1 <= 64
            assert not mask[by0:by1, bx0:bx1].any()
            covered[by0:by1, bx0:bx1] += 1
        assert covered.max() <= 1 and len(boxes) >= 3  # disjoint; a 64 px image has room beside the object
    assert object_box(np.zeros((8, 8), bool)) is None


def test_background_boxes_are_seeded_and_fewer_where_there_is_no_room():
    mask = np.zeros((32, 32), bool)
    mask[4:28, 4:28] = True
    first = background_boxes(mask, 3, 4, np.random.default_rng(1))
    assert first == background_boxes(mask, 3, 4, np.random.default_rng(1)) and len(first) == 3
    assert background_boxes(mask, 3, 8, np.random.default_rng(1)) == []  # the free border is 4 px wide
    with pytest.raises(ValueError, match="40 px does not fit a 32x32 image"):
        background_boxes(mask, 1, 40, np.random.default_rng(0))


def test_the_grid_tiles_the_image():
    boxes = grid_boxes(30, 31, 3)
    covered = np.zeros((30, 31), int)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] += 1
    assert len(boxes) == 9 and (covered == 1).all()
