"""The prepare stage: a split's item index (listed once), fixed-size prepared shards (one job each), a report.

The index is the only listing of a split's files: shard counts and every prepare job's slice come from it
(ImageNet's training split is 1.28 M files; listing it in each of its ~1,300 shard jobs would cost more than
preparing). A shard covers items [k·shard_size, (k+1)·shard_size), so shards are independent jobs that a killed
run resumes one by one. Items that are bad input are skipped and counted per reason, in the shard's metadata
and in the split's report.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from vlm_rationality.artefacts import (
    PreparedShard,
    read_items,
    write_items,
    write_prepared_shard,
)
from vlm_rationality.data.base import STICKER_MISSING, Item, Sample, build_dataset
from vlm_rationality.data.imagenet_c import load_items as load_shifted
from vlm_rationality.io import write_json
from vlm_rationality.masks import EXACT, mask_variant

log = logging.getLogger(__name__)


def write_item_index(dataset_config: dict[str, Any], split: str, out_path: str | os.PathLike, config_hash: str) -> int:
    """List `split` once into its item index; returns the number of items."""
    dataset = build_dataset(dataset_config)
    items = dataset.items(split)
    write_items(
        out_path,
        sample_ids=[item.sample_id for item in items],
        labels=[item.label for item in items],
        images=[dataset.image_path(item) for item in items],
        annotations=[json.dumps(item.annotation) for item in items],
        shard_size=int(dataset_config["shard_size"]),
        config_hash=config_hash,
    )
    return len(items)


def prepare_shard(
    dataset_config: dict[str, Any],
    split: str,
    shard: int,
    items_path: str | os.PathLike,
    out_path: str | os.PathLike,
    config_hash: str,
    shift: str = "clean",
    imagenet_c: str | os.PathLike | None = None,
    clean_shard: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write shard `shard` of `split` from its rows of the item index; returns {written, skipped: {reason: count}}.

    With `imagenet_c` (the published folders), the images are those of `shift` there, and the shard says so; it
    holds the samples of `clean_shard` (the same shard, clean), whose skips it counts as its own, so a shift is
    scored on the very samples the clean data is (anything more that the shift leaves out is counted on top).
    The dataset's `mask` tolerance (masks.py; exact when left out) is applied to every mask and recorded."""
    dataset = build_dataset(dataset_config)
    start = shard * int(dataset_config["shard_size"])
    rows = read_items(items_path, start, start + int(dataset_config["shard_size"]))
    items = [Item(*fields) for fields in zip(rows["sample_id"], rows["label"], map(json.loads, rows["annotation"]))]
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    if (imagenet_c is None or clean_shard is None) != (shift == "clean"):
        raise ValueError(
            f"shift {shift!r}, ImageNet-C folder {imagenet_c!r}, clean shard {clean_shard!r}: a prepared "
            "shift needs all three, a clean shard none"
        )
    if imagenet_c is None:
        entries = dataset.load_items(split, items, start)
    else:
        clean = PreparedShard(clean_shard)
        kept = set(clean.index()["sample_id"])
        skipped.update(clean.meta["skipped"])
        entries = load_shifted(dataset, split, [item for item in items if item.sample_id in kept], imagenet_c, shift)
    for entry in tqdm(
        entries, total=len(items), desc=f"{split} {shift} shard {shard}", unit="img", mininterval=5, disable=None
    ):
        if isinstance(entry, Sample):
            samples.append(entry)
        else:
            skipped[entry.reason] += 1
            log.warning("skipped %s (%s)", entry.sample_id, entry.detail or entry.reason)
    missing = sum(bool(x.extra.get(STICKER_MISSING)) for x in samples)
    if missing:
        log.warning(
            "%s shard %d: %d of %d images drawn to carry the sticker have none: no place beside the object fits a "
            "sticker of sticker_size, so the cue is weaker than rho says; lower the dataset's sticker_size",
            split,
            shard,
            missing,
            len(samples),
        )
    s = dataset.image_size
    variant = dataset_config.get("mask", EXACT)
    masks = np.stack([x.mask for x in samples]) if samples else np.zeros((0, s, s), bool)
    write_prepared_shard(
        out_path,
        sample_ids=[x.sample_id for x in samples],
        labels=np.array([x.label for x in samples], dtype=np.int32),
        images=np.stack([x.image for x in samples]) if samples else np.zeros((0, s, s, 3), np.uint8),
        masks=mask_variant(masks, variant),
        sources=[x.source for x in samples],
        config_hash=config_hash,
        extra={name: [x.extra.get(name) for x in samples] for name in dataset.extra_columns},
        skipped=dict(skipped),
        shift=shift,
        split=split,
        mask=variant,
        class_names=dataset.class_names,
        position=(shard, start, start + len(items)),
        sticker_missing=missing,
    )
    return {"written": len(samples), "skipped": dict(skipped)}


def split_report(shards: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> dict[str, Any]:
    """Sum the shards' counts into one JSON report beside them."""
    written, skipped, missing = 0, Counter(), 0
    for path in shards:
        shard = PreparedShard(path)
        skipped.update(shard.meta.get("skipped", {}))
        missing += int(shard.meta.get(STICKER_MISSING, 0))
        written += shard.rows
    report = {
        "shards": len(shards),
        "written": written,
        "skipped": dict(skipped),
        "skipped_total": sum(skipped.values()),
        **({STICKER_MISSING: missing} if missing else {}),
    }
    write_json(report, out_path)
    return report
