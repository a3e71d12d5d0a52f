"""Dataset adapters and prepared shards: each adapter registers itself, and the registry imports the one a config
names (registry.py)."""

from vlm_rationality.data.base import DATASET_ADAPTERS, Dataset, Item, Sample, Skipped, build_dataset

__all__ = ["DATASET_ADAPTERS", "Dataset", "Item", "Sample", "Skipped", "build_dataset"]
