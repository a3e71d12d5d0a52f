"""Config checks the JSON schema cannot make, and the per-stage specs the workflow hands to the CLI.

The schema (workflow/schemas/config.schema.yaml) checks types, ranges and required keys; this module checks
names against the registries and references between sections, so that a bad config fails before any job
runs with a message naming the key. Each `*_spec` function returns exactly what one stage depends on: the
workflow passes it as the rule's params, so a changed value reruns exactly the jobs that depend on it.
"""

from __future__ import annotations

import math
from typing import Any

from vlm_rationality.data import DATASET_ADAPTERS, build_dataset
from vlm_rationality.data.corruptions import parse_shift

Config = dict[str, Any]


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def check_config(config: Config) -> None:
    # Registries are imported here so that reading the config stays light for everything else.
    from vlm_rationality.explain import HEATMAP_METHODS
    from vlm_rationality.finetune import FINETUNE_METHODS
    from vlm_rationality.models import MODEL_ADAPTERS
    from vlm_rationality.models.base import check_model_spec

    for name, dataset in config["datasets"].items():
        key = f"datasets.{name}"
        if dataset["adapter"] not in DATASET_ADAPTERS:
            raise ConfigError(f"{key}.adapter: unknown dataset adapter {dataset['adapter']!r}; known: {', '.join(DATASET_ADAPTERS)}")
        for split in (config["eval_split"], config["train_split"]):
            if split not in dataset["splits"]:
                raise ConfigError(f"{key}.splits: no {split!r} split (named by eval_split/train_split)")
        try:
            build_dataset(dataset)
        except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
            raise ConfigError(f"{key}: {err}") from err
    for name, model in config["models"].items():
        key = f"models.{name}"
        if model.get("adapter", "open_clip") not in MODEL_ADAPTERS:
            raise ConfigError(f"{key}.adapter: unknown model adapter {model['adapter']!r}; known: {', '.join(MODEL_ADAPTERS)}")
        try:
            check_model_spec(model)
        except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
            raise ConfigError(f"{key}: {err}") from err
        pretrain = model.get("pretrain")
        if pretrain is not None:
            if "pretrained" in model:
                raise ConfigError(f"{key}: give either `pretrain` (the workflow trains the base) or `pretrained`, not both")
            source = config["datasets"].get(pretrain["dataset"])
            if source is None:
                raise ConfigError(f"{key}.pretrain.dataset: no dataset {pretrain['dataset']!r} in datasets")
            if pretrain["split"] not in source["splits"]:
                raise ConfigError(f"{key}.pretrain.split: dataset {pretrain['dataset']!r} has no split {pretrain['split']!r}")
    for name, method in config["methods"].items():
        if method["kind"] not in FINETUNE_METHODS:
            raise ConfigError(f"methods.{name}.kind: unknown method {method['kind']!r}; known: {', '.join(FINETUNE_METHODS)}")
        if method.get("augment") and method["kind"] in ("zs", "lp"):
            raise ConfigError(f"methods.{name}.augment: {method['kind']} trains no image tower (lp reads features extracted once)")
    for key, shift_list in [("shifts", config["shifts"])] + [
        (f"datasets.{name}.shifts", d["shifts"]) for name, d in config["datasets"].items() if "shifts" in d
    ]:
        for shift in shift_list:
            try:
                parse_shift(shift)
            except ValueError as err:
                raise ConfigError(f"{key}: {err}") from err
    for heatmap in config["heatmaps"]["methods"]:
        if heatmap not in HEATMAP_METHODS:
            raise ConfigError(f"heatmaps.methods: unknown heatmap method {heatmap!r}; known: {', '.join(HEATMAP_METHODS)}")


def shifts(config: Config, dataset: str) -> list[str]:
    """A dataset's own `shifts` list, else the global one (the paper evaluates ImageNet-C on ImageNet only)."""
    return list(config["datasets"][dataset].get("shifts", config["shifts"]))


def trains(config: Config, method: str) -> bool:
    """Read from the method's registered class: a method that trains has a checkpoint to explain."""
    from vlm_rationality.finetune import FINETUNE_METHODS

    return FINETUNE_METHODS.get(config["methods"][method]["kind"]).trains


def shard_count(config: Config, dataset: str, split: str) -> int:
    spec = config["datasets"][dataset]
    return math.ceil(build_dataset(spec).split_size(split) / int(spec["shard_size"]))


def shard_groups(count: int, per_job: int) -> list[tuple[int, int]]:
    """Consecutive (first, last) shard ranges of at most `per_job` shards: one explain job, one heatmap file each."""
    return [(first, min(first + per_job, count) - 1) for first in range(0, count, per_job)]


def heatmap_spec(config: Config, heatmap_method: str) -> Config:
    """What one heatmap method's maps depend on: not the other methods of the list, nor how shards are grouped
    into jobs, so adding a heatmap method reruns no existing heatmap."""
    spec = {key: value for key, value in config["heatmaps"].items() if key not in ("methods", "shards_per_job")}
    return {"method": heatmap_method, **spec}


def prepare_spec(config: Config, dataset: str, split: str) -> Config:
    """The dataset config narrowed to one split: resizing another split reruns nothing here."""
    spec = {key: value for key, value in config["datasets"][dataset].items() if key != "shifts"}
    spec["splits"] = {split: spec["splits"][split]}
    return spec


def base_model_spec(config: Config, model: str, base_path: str) -> Config:
    """The model config a stage builds from: a workflow-pretrained base replaces `pretrained` by its file."""
    spec = {key: value for key, value in config["models"][model].items() if key != "pretrain"}
    spec.setdefault("adapter", "open_clip")
    if "pretrain" in config["models"][model]:
        spec["pretrained"] = base_path
    return spec


def prompts(config: Config, dataset: str) -> list[str]:
    return build_dataset(config["datasets"][dataset]).prompts(config["prompt_template"])
