"""Dataset adapters and prepared shards; importing this package registers the adapters."""

from vlm_rationality.data import synthetic  # noqa: F401  (registers "synthetic")
from vlm_rationality.data.base import DATASET_ADAPTERS, Dataset, Sample, build_dataset

__all__ = ["DATASET_ADAPTERS", "Dataset", "Sample", "build_dataset"]
