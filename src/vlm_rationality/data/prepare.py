"""The prepare stage: a dataset split -> fixed-size prepared shards, one job per shard.

A shard covers samples [k·shard_size, (k+1)·shard_size) of the split, so shards are independent jobs that a
killed run resumes one by one, and the shard list follows from the config alone.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from vlm_rationality.data.base import build_dataset
from vlm_rationality.data.shards import write_prepared_shard


def shard_count(dataset_config: dict[str, Any], split: str) -> int:
    return math.ceil(build_dataset(dataset_config).split_size(split) / int(dataset_config["shard_size"]))


def prepare_shard(dataset_config: dict[str, Any], split: str, shard: int, out_path: str | os.PathLike, config_hash: str) -> int:
    """Write shard `shard` of `split`; returns the number of samples written."""
    dataset = build_dataset(dataset_config)
    size = int(dataset_config["shard_size"])
    samples = list(dataset.samples(split, shard * size, (shard + 1) * size))
    if not samples:
        raise ValueError(f"{split} shard {shard} of dataset config {dataset_config.get('adapter')} is empty")
    write_prepared_shard(
        out_path,
        sample_ids=[s.sample_id for s in samples],
        labels=np.array([s.label for s in samples]),
        images=np.stack([s.image for s in samples]),
        masks=np.stack([s.mask for s in samples]),
        sources=[s.source for s in samples],
        config_hash=config_hash,
        extra={name: [s.extra.get(name) for s in samples] for name in dataset.extra_columns},
    )
    return len(samples)
