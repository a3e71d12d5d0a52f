"""The cost of a config's default target before any job runs: jobs per model stage, device hours, peak memory, disk.

`vlm-rationality plan --configfile …` reads the config as the workflow does, counts each split's items from the
dataset folders themselves (the workflow learns them only once its `items` jobs have listed them), and prices the
model stages with the config's `resources.images_per_second` and the same per-image memory the jobs are sized
with (sizing.py, from the model adapters' facts). Hours are the images a stage pushes through a model over its rate:
a budget to check before submitting a grid, not a measurement. Bookkeeping jobs (items, reports, scoring) take
minutes and are left out; so are the targets outside `all` (protocol_sensitivity) and RaVL's region assignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

from vlm_rationality.data import DATASET_ADAPTERS, build_dataset
from vlm_rationality.models.adapter import model_adapter
from vlm_rationality.plan import jobs as planned
from vlm_rationality.plan import specs
from vlm_rationality.plan.config import ConfigError
from vlm_rationality.plan.sizing import (
    CPU_BATCH,
    MiB,
    cpu_batch,
    explain_bytes_per_image,
    job_resources,
    job_size,
    rate_key,
)

Config = dict[str, Any]
GiB = 2**30
# Bytes on disk per item: a prepared image is stored raw (uint8 pixels, bit-packed mask; zstd keeps photos near
# their size); a heatmap row holds float16 logits and grid plus ~40 bytes of ids and RMA; a prediction float32
# logits and cosines.
ROW_OVERHEAD = 40


@dataclass
class StageCost:
    name: str
    jobs: int = 0
    images: int = 0  # images through a model (x epochs, x twins, ...), as the jobs are sized
    hours: float = 0.0  # device hours at the configured images_per_second
    requested_hours: float = 0.0  # the runtime the jobs ask the scheduler for (margin, minimum, corruptions)
    peak_mb: int = 0  # the largest job's device (or host, on CPU) memory for its model and batch
    disk_bytes: int = 0


def _splits(config: Config, dataset: str) -> set[str]:
    """Every split of `dataset` the workflow prepares."""
    splits = {config["train_split"], config["eval_split"]}
    for model in config["models"].values():
        if model.get("pretrain", {}).get("dataset") == dataset:
            splits.add(model["pretrain"]["split"])
    if dataset in specs.robustness_datasets(config):
        splits |= {entry["split"] for entry in specs.prediction_sets(config, dataset)}
    if "discovery" in config:
        splits.add(config["discovery"]["split"])
    splits |= {entry["early_stopping"]["split"] for entry in config["methods"].values() if entry.get("early_stopping")}
    return splits


def split_sizes(config: Config, assumed: list[str] | None = None) -> dict[tuple[str, str], int]:
    """(dataset, split) -> items, listed from the dataset's folders (or the generator's config) now. With `assumed`
    (for `plan`), a dataset whose files are not there yet is priced at its published split sizes, noted in it."""
    sizes = {}
    for dataset in config["datasets"]:
        for split in sorted(_splits(config, dataset)):
            try:
                known = specs.known_size(config, dataset, split)
                spec = specs.prepare_spec(config, dataset, split)
                sizes[dataset, split] = known if known is not None else len(build_dataset(spec).items(split))
            except FileNotFoundError:
                if assumed is None:
                    raise
                sizes[dataset, split] = _published(config, dataset, split, assumed)
    return sizes


def _classes(config: Config, dataset: str, assumed: list[str] | None) -> int:
    try:
        return len(specs.class_names(config, dataset))
    except FileNotFoundError:
        entry = config["datasets"][dataset]
        count = DATASET_ADAPTERS.get(entry["adapter"]).published_classes(entry)
        if assumed is None or count is None:
            raise
        assumed.append(f"datasets.{dataset}: priced with {count} classes, as published")
        return count


def _published(config: Config, dataset: str, split: str, assumed: list[str]) -> int:
    shifted = specs.shifted_sets(config).get(split[len(specs.SHIFTED_SPLIT) :], {})
    entry = shifted if split.startswith(specs.SHIFTED_SPLIT) and shifted else config["datasets"][dataset]
    adapter = DATASET_ADAPTERS.get(entry["adapter"])
    size = adapter.published_size(entry, split)
    if size is None:
        raise ConfigError(
            f"datasets.{dataset}.splits.{split}: its files are not there and {entry['adapter']} publishes no size "
            "for it; fetch the data first (or give the split a `size`)"
        )
    assumed.append(f"datasets.{dataset}.splits.{split}: priced at {size:,} items ({adapter.published})")
    return size


def _model_mb(config: Config, model: str, dataset: str, batch: int, training: bool) -> int:
    """Weights (with gradients and two Adam moments when training) and one batch's activations at `dataset`'s size."""
    entry = specs.model_at(config, model, dataset)
    weights = model_adapter(entry).approx_parameters() * (16 if training else 4)
    return math.ceil((weights + batch * explain_bytes_per_image(entry)) / MiB)


def jobs(config: Config, sizes: dict[tuple[str, str], int]) -> dict[str, list[SimpleNamespace]]:
    """The jobs of each model stage the default target runs (jobs.py), each as the wildcards its sizing reads."""
    size = lambda dataset, split: sizes[dataset, split]  # noqa: E731
    found = {
        "prepare": planned.prepare(config, sizes),
        "pretrain": planned.pretrain(config),
        "finetune": planned.finetune(config),
        "explain": planned.explain(config, size),
        "predict": planned.predict(config),
        "twins": planned.twins(config, size),
        "discover": planned.discover(config),
    }
    return {name: [SimpleNamespace(**wildcards) for wildcards in listed] for name, listed in found.items()}


def plan(config: Config, assumed: list[str] | None = None) -> list[StageCost]:
    """The model stages of a checked config (check_config fills its defaults), with their jobs and costs; `assumed`:
    see split_sizes. Each job is sized as its rule is (sizing.job_size, job_resources): the images and requested
    hours are sums over the jobs the workflow runs."""
    sizes = split_sizes(config, assumed)
    rate = config["resources"]["images_per_second"]
    stages = {}
    for name, found in jobs(config, sizes).items():
        stage = stages[name] = StageCost(name, len(found))
        for wildcards in found:
            size = job_size(config, name, wildcards, lambda dataset, split: sizes[dataset, split])
            stage.images += size.images * size.passes
            stage.requested_hours += job_resources(config["resources"], config["device"], name, size)["runtime"] / 60
        stage.hours = stage.images / rate[rate_key(name)] / 3600
    _footprint(config, sizes, stages, assumed)
    return [stage for stage in stages.values() if stage.jobs]


def _footprint(config: Config, sizes: dict[tuple[str, str], int], stages: dict[str, StageCost], assumed) -> None:
    """Each stage's disk and its largest job's memory for its model and batch."""
    for (dataset, split), items in sizes.items():
        side = config["datasets"][dataset]["image_size"]
        stages["prepare"].disk_bytes += (
            items * (side**2 * 3 + side**2 // 8) * (1 + len(planned.prerendered(config, dataset, split)))
        )
    for name, model in config["models"].items():
        if "pretrain" in model:
            stage = stages["pretrain"]
            stage.peak_mb = max(
                stage.peak_mb,
                _model_mb(config, name, model["pretrain"]["dataset"], model["pretrain"]["batch_size"], True),
            )
            stage.disk_bytes += model_adapter(model).approx_parameters() * 4
    trained = [method for method in config["methods"] if specs.trains(config, method)]
    batch = cpu_batch(config["heatmaps"]["batch_size"])
    for dataset in config["datasets"]:
        classes, eval_items = _classes(config, dataset, assumed), sizes[dataset, config["eval_split"]]
        maps = len(config["methods"]) * len(specs.shifts(config, dataset)) * len(config["heatmaps"]["methods"])
        for model in config["models"]:
            weights = model_adapter(config["models"][model]).approx_parameters() * 4
            for method in trained:
                stages["finetune"].disk_bytes += weights
                if not specs.loads(config, method):  # loaded, not trained: no training batch
                    peak = _model_mb(config, model, dataset, config["methods"][method]["batch_size"], True)
                    stages["finetune"].peak_mb = max(stages["finetune"].peak_mb, peak)
            stage = stages["explain"]
            stage.peak_mb = max(stage.peak_mb, _model_mb(config, model, dataset, batch, False))
            # the heatmap's patch grid at this dataset's size
            cells = model_adapter(specs.model_at(config, model, dataset)).vision_shape()[2] - 1
            stage.disk_bytes += maps * eval_items * (2 * classes + ROW_OVERHEAD + 2 * cells)
            if dataset in specs.robustness_datasets(config):
                seen = sum(sizes[dataset, s["split"]] for s in specs.prediction_sets(config, dataset))
                stages["predict"].disk_bytes += len(config["methods"]) * seen * (8 * classes + ROW_OVERHEAD)


def markdown(stages: list[StageCost], config: Config, assumed: Sequence[str] = ()) -> str:
    lines = [
        f"| stage | jobs | images through a model | {'CPU' if config['device'] == 'cpu' else 'GPU'} hours | "
        "hours requested | peak memory per job | disk |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in stages:
        lines.append(
            f"| {stage.name} | {stage.jobs:,} | {stage.images:,} | {stage.hours:,.1f} | {stage.requested_hours:,.1f} | "
            f"{_size(stage.peak_mb * MiB) if stage.peak_mb else '–'} | "
            f"{_size(stage.disk_bytes) if stage.disk_bytes else '–'} |"
        )
    total = sum(s.hours for s in stages if s.name != "prepare")
    rates = ", ".join(f"{key} {value:g}" for key, value in config["resources"]["images_per_second"].items())
    lines += [
        "",
        f"Model stages: {total:,.1f} hours at resources.images_per_second ({rates}); disk "
        f"{_size(sum(s.disk_bytes for s in stages))}; peak memory for heatmaps.batch_size "
        f"{config['heatmaps']['batch_size']} ({CPU_BATCH} where auto: on a GPU, auto fills 80% of its free memory). "
        "Hours requested: the runtime the jobs ask the scheduler for (resources.runtime_margin, min_runtime, the "
        "corruptions made on the CPU). Items, scoring and reports add minutes.",
    ]
    if assumed:
        lines += ["", "Assumed, since these are not on disk yet:", "", *(f"- {note}" for note in assumed)]
    return "\n".join(lines)


def _size(count: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", GiB), ("MiB", MiB)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count / 2**10:,.0f} KiB"
