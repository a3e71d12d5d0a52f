"""The jobs of the model stages a config runs, each as its rule's wildcards: the workflow expands them into the
files its default target needs (dag.py) and `plan` sizes and prices the same jobs (cost.py), so the two cannot
disagree on what runs.

`split_size(dataset, split)` says how many items a split lists, however the caller knows: `plan` from the dataset
folders, the workflow from the split's item index (asking for one not written yet makes Snakemake write it first).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from vlm_rationality.plan import specs

Config = dict[str, Any]
Wildcards = dict[str, Any]
SplitSize = Callable[[str, str], int]


def groups(config: Config, dataset: str, split_size: SplitSize) -> list[str]:
    """The explain (and twins) jobs' shard groups of a dataset's scored split, `first-last`."""
    entry = config["datasets"][dataset]
    count = math.ceil(split_size(dataset, config["eval_split"]) / int(entry["shard_size"]))
    return [f"{a:04d}-{b:04d}" for a, b in specs.shard_groups(count, config["heatmaps"]["shards_per_job"])]


def prerendered(config: Config, dataset: str, split: str) -> list[str]:
    """The shifts of a split prepared from the published ImageNet-C folders (its scored split's, where it has them)."""
    if "imagenet_c" not in config["datasets"][dataset] or split != config["eval_split"]:
        return []
    return [shift for shift in specs.shifts(config, dataset) if shift != "clean"]


def prepare(config: Config, splits: dict[tuple[str, str], int]) -> list[Wildcards]:
    """One job per shard of each split, and per pre-rendered shift of it."""
    return [
        {"dataset": dataset, "split": split, "shift": shift, "shard": shard}
        for (dataset, split), items in splits.items()
        for shift in ["clean", *prerendered(config, dataset, split)]
        for shard in range(math.ceil(items / int(config["datasets"][dataset]["shard_size"])))
    ]


def pretrain(config: Config) -> list[Wildcards]:
    return [{"model": model} for model, entry in config["models"].items() if "pretrain" in entry]


def finetune(config: Config) -> list[Wildcards]:
    """Every (dataset, model) with every method that trains (or loads) a classifier."""
    trained = [method for method in config["methods"] if specs.trains(config, method)]
    return [
        {"dataset": dataset, "model": model, "method": method}
        for dataset in config["datasets"]
        for model in config["models"]
        for method in trained
    ]


def explain(
    config: Config, split_size: SplitSize, methods: Sequence[str] | None = None, clean_only: bool = False
) -> list[Wildcards]:
    """One heatmap file per (dataset, shard group, shift, model, method, heatmap method): the configured methods (or
    `methods`), under every shift or the clean data only."""
    return [
        {"dataset": dataset, "group": group, "shift": shift, "model": model, "method": method, "heatmap": heatmap}
        for dataset in config["datasets"]
        for group in groups(config, dataset, split_size)
        for shift in (["clean"] if clean_only else specs.shifts(config, dataset))
        for model in config["models"]
        for method in (config["methods"] if methods is None else methods)
        for heatmap in config["heatmaps"]["methods"]
    ]


def twins(config: Config, split_size: SplitSize) -> list[Wildcards]:
    """One twins file per (dataset, model, method) and shard group, on the clean data."""
    if "twins" not in config:
        return []
    return [
        {"dataset": dataset, "model": model, "method": method, "group": group}
        for dataset in config["datasets"]
        for model in config["models"]
        for method in config["methods"]
        for group in groups(config, dataset, split_size)
    ]


def predict(config: Config) -> list[Wildcards]:
    """One predictions file per (dataset, model, method) of the datasets the robustness table covers."""
    return [
        {"dataset": dataset, "model": model, "method": method}
        for dataset in specs.robustness_datasets(config)
        for model in config["models"]
        for method in config["methods"]
    ]


def discover(config: Config) -> list[Wildcards]:
    """RaVL's Stage 1 per (dataset, model) on each method `discovery.methods` names (default all)."""
    if "discovery" not in config:
        return []
    methods = config["discovery"].get("methods") or list(config["methods"])
    return [
        {"dataset": dataset, "model": model, "method": method}
        for dataset in config["datasets"]
        for model in config["models"]
        for method in methods
    ]
