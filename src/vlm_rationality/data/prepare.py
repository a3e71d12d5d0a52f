"""The prepare stage: a dataset split -> fixed-size prepared shards, one job per shard, and a split report.

A shard covers items [k·shard_size, (k+1)·shard_size) of the split, so shards are independent jobs that a
killed run resumes one by one, and the shard list follows from the config alone. Items that are bad input
are skipped and counted per reason, in the shard's metadata and in the split's report.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from vlm_rationality.artefacts import prepared_meta, write_prepared_shard
from vlm_rationality.data.base import Sample, build_dataset
from vlm_rationality.io import write_json

log = logging.getLogger(__name__)


def prepare_shard(dataset_config: dict[str, Any], split: str, shard: int, out_path: str | os.PathLike, config_hash: str) -> dict[str, Any]:
    """Write shard `shard` of `split`; returns {written, skipped: {reason: count}}."""
    dataset = build_dataset(dataset_config)
    size = int(dataset_config["shard_size"])
    start = shard * size
    stop = min(start + size, dataset.split_size(split))
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    for entry in tqdm(dataset.samples(split, start, stop), total=stop - start, desc=f"{split} shard {shard}",
                      unit="img", mininterval=5, disable=None):
        if isinstance(entry, Sample):
            samples.append(entry)
        else:
            skipped[entry.reason] += 1
            log.warning("skipped %s (%s)", entry.sample_id, entry.detail or entry.reason)
    s = dataset.image_size
    write_prepared_shard(
        out_path,
        sample_ids=[x.sample_id for x in samples],
        labels=np.array([x.label for x in samples], dtype=np.int32),
        images=np.stack([x.image for x in samples]) if samples else np.zeros((0, s, s, 3), np.uint8),
        masks=np.stack([x.mask for x in samples]) if samples else np.zeros((0, s, s), bool),
        sources=[x.source for x in samples],
        config_hash=config_hash,
        extra={name: [x.extra.get(name) for x in samples] for name in dataset.extra_columns},
        skipped=dict(skipped),
    )
    return {"written": len(samples), "skipped": dict(skipped)}


def split_report(shards: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> dict[str, Any]:
    """Sum the shards' counts into one JSON report beside them."""
    written, skipped = 0, Counter()
    for path in shards:
        skipped.update(prepared_meta(path).get("skipped", {}))
        written += pq.ParquetFile(path).metadata.num_rows
    report = {"shards": len(shards), "written": written, "skipped": dict(skipped), "skipped_total": sum(skipped.values())}
    write_json(report, out_path)
    return report
