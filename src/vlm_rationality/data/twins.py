"""Counterfactual twins: each sample's object on other backgrounds, and its background without the object.

The ground truth for a rationale. A prediction that rests on the object does not change when only the background
does; one that rests on the background does. As in the Backgrounds Challenge (Xiao et al., ICLR 2021), every twin
is a named variant of the same sample: `twins[k]` is the object (its mask's pixels, copied bit for bit) on the k-th
other background, `alone` is the sample's own background with the object removed.

On disk datasets the backgrounds come from other images of the same pool (the shards one job reads). Another
image's background is that image with its own object's region filled from a third, seeded image where that one
shows background, and with the image's mean background colour where neither does (Mixed-Rand / Mixed-Next, and
Only-BG with the hole filled from a donor rather than tiled). The first background is one of the sample's own class
when the pool has one (Mixed-Same), the rest are of other classes (Mixed-Rand): the accuracy gap between the two is
the BG-gap. With a box as the mask (ImageNet, Stanford Dogs), the "object" carries the box's background with it, so
these twins test the box, not the object's outline.

The synthetic generator overrides this: it renders each texture afresh (data/synthetic.py, `render_twins`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Twins:
    """The twins of a batch of B samples, K backgrounds each."""

    images: np.ndarray  # uint8 [B, K, H, W, 3]: the object on each background
    same_class: np.ndarray  # bool [B, K]: the background is the one the sample's class is tied to (Mixed-Same)
    alone: np.ndarray  # uint8 [B, H, W, 3]: the background without the object
    alone_masks: np.ndarray  # bool [B, H, W]: the object mask of the background-alone twin (empty)
    cue_class: np.ndarray  # int [B, K]: the class the twin's cue pulls towards (its background's class), -1 for none


@dataclass
class Pool:
    """The images twins take their backgrounds from: one job's prepared shards."""

    sample_ids: list[str]
    labels: np.ndarray  # int [N]
    images: np.ndarray  # uint8 [N, H, W, 3]
    masks: np.ndarray  # bool [N, H, W]


def sample_seed(seed: int, sample_id: str) -> np.random.Generator:
    """A sample's twins depend on its id alone, not on the batch or job it falls in."""
    return np.random.default_rng([seed, zlib.crc32(sample_id.encode())])


def remove_object(image: np.ndarray, mask: np.ndarray, donor: np.ndarray, donor_mask: np.ndarray) -> np.ndarray:
    """`image` with its object's pixels replaced by the donor's background, or by the image's mean background colour
    where the donor shows its own object too (mid-grey if the image has no background at all)."""
    out = image.copy()
    from_donor = mask & ~donor_mask
    out[from_donor] = donor[from_donor]
    rest = mask & donor_mask
    if rest.any():
        background = image[~mask]
        out[rest] = np.rint(background.mean(axis=0)).astype(np.uint8) if len(background) else 128
    return out


def object_only(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The object alone: every background pixel replaced by the image's mean background colour (mid-grey where the
    image has no background). An intervention that needs no other image, so it works on any dataset with masks."""
    out = images.copy()
    for image, mask, target in zip(images, masks, out):
        background = image[~mask]
        target[~mask] = np.rint(background.mean(axis=0)).astype(np.uint8) if len(background) else 128
    return out


def pasted_twins(
    sample_ids: Sequence[str],
    labels: np.ndarray,
    images: np.ndarray,
    masks: np.ndarray,
    pool: Pool,
    count: int,
    seed: int,
) -> Twins:
    """Twins from other images of `pool`: `count` backgrounds per sample, the first of the sample's own class where
    the pool has another image of it. The pool needs at least `count` + 2 images (the sample, its backgrounds and a
    donor)."""
    if len(pool.sample_ids) < count + 2:
        raise ValueError(
            f"twins.backgrounds is {count}, but the job's shards hold {len(pool.sample_ids)} images and {count + 2} "
            "are needed (the sample, its backgrounds and a donor); lower twins.backgrounds"
            + (f" to {len(pool.sample_ids) - 2}" if len(pool.sample_ids) > 2 else "")
            + ", or choose shard_size and heatmaps.shards_per_job so that every explain job holds enough"
        )
    position = {sample_id: i for i, sample_id in enumerate(pool.sample_ids)}
    batch, height, width = masks.shape
    out = np.empty((batch, count, height, width, 3), np.uint8)
    same = np.zeros((batch, count), bool)
    cue = np.full((batch, count), -1, np.int64)
    alone = np.empty_like(images)
    everyone = np.arange(len(pool.sample_ids))
    for b, sample_id in enumerate(sample_ids):
        rng = sample_seed(seed, sample_id)
        self_index = position.get(sample_id, -1)
        others = everyone[everyone != self_index]
        own = others[pool.labels[others] == labels[b]]
        rest = others[pool.labels[others] != labels[b]]
        chosen = list(rng.choice(own, 1)) if len(own) else []
        chosen += list(rng.choice(rest, min(count - len(chosen), len(rest)), replace=False))
        if len(chosen) < count:  # too few other classes: fill from the sample's own
            chosen += list(rng.choice(np.setdiff1d(own, chosen), count - len(chosen), replace=False))
        for k, j in enumerate(chosen):
            donor = rng.choice(others[(others != j)])
            background = remove_object(pool.images[j], pool.masks[j], pool.images[donor], pool.masks[donor])
            out[b, k] = np.where(masks[b][..., None], images[b], background)
            same[b, k] = pool.labels[j] == labels[b]
            cue[b, k] = pool.labels[j]
        donor = rng.choice(others)
        alone[b] = remove_object(images[b], masks[b], pool.images[donor], pool.masks[donor])
    return Twins(out, same, alone, np.zeros_like(masks), cue)
