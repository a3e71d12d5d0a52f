"""Job resources (memory, runtime, GPUs) sized from what a job holds and computes.

The workflow declares these on every rule, so any executor (a workstation, the SLURM plugin) sees requests
that follow the config: a bigger model, split or shard group asks for more, a CPU-only run asks for no GPU.
The throughputs in the config's `resources` section are the one guess; set them to what your device does.
CPUs are the rule's own `threads` (the SLURM plugin requests them when no cpus_per_task is given), so a
single-thread job never reserves the config's `threads`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

from vlm_rationality.models.adapter import model_adapter
from vlm_rationality.plan import specs
from vlm_rationality.plan.protocol import method_entry
from vlm_rationality.stages import gpu_rules, rule_stages

MiB = 2**20
# What one image costs in each stage besides its pixels: explain keeps logits and a heatmap per sample
# (ImageNet: 1,000 float16 logits), score a handful of columns.
ROW_BYTES = {"explain": 8192, "predict": 4096, "score": 64, "robustness": 4096, "validity": 16384}
CPU_BATCH = 64  # heatmaps.batch_size auto on the CPU (host memory is not what limits it; throughput stops growing)

# Bytes an explanation holds per image, per block: per attention weight (heads x tokens^2) and per token activation
# (tokens x width), fitted to the peak host memory of chefer on CPU (2 threads, batches of 2 and 8): ViT-B/16 at 224,
# 171 MiB per image; ViT-B/32, 38 MiB (gradcam 147 MiB and rollout 39 MiB on ViT-B/16 stay below chefer's).
BYTES_PER_ATTENTION, BYTES_PER_ACTIVATION = 6, 82


def explain_bytes_per_image(config: dict[str, Any]) -> int:
    """Memory one image adds to an explain batch (activations and attention kept for the backward pass)."""
    layers, heads, tokens, width = model_adapter(config).vision_shape()
    return layers * (BYTES_PER_ATTENTION * heads * tokens**2 + BYTES_PER_ACTIVATION * tokens * width)


def training_images_held(images: int, image_size: int, shard_size: int, training_data: dict[str, Any]) -> int:
    """Images a training job holds at once: the whole split, or three shuffle windows of shards when it is streamed
    (finetune/data.py decides the same way)."""
    if images * image_size * image_size * 3 <= training_data["in_memory_mb"] * MiB:
        return images
    return min(images, 3 * training_data["window"] * shard_size)


@dataclass(frozen=True)
class JobSize:
    """What sizes one job: the images it pushes through a model (`images`, of side `image_size`, `passes` times:
    epochs, twins per image, ...), `held_images` of them in memory at once (default all: a streamed training split
    holds fewer), its model's `parameters`, the GPUs (data-parallel processes) it asks for, `batch_bytes` that one
    batch holds in host memory besides (an explain batch on the CPU: its activations and attention), and whether it
    corrupts its images on the CPU (a shift not read from ImageNet-C)."""

    images: int = 0
    image_size: int = 0
    parameters: int = 0
    passes: int = 1
    gpus: int = 1
    held_images: int | None = None
    batch_bytes: int = 0
    corrupted: bool = False


def job_resources(settings: dict[str, Any], device: str, stage: str, size: JobSize, attempt: int = 1) -> dict[str, int]:
    """A job's memory, runtime and GPUs from its size (`JobSize`) and the config's `resources` (`settings`).

    Memory grows with each retry (`attempt`), so a job killed for memory gets more the next time.
    """
    images, image_size, parameters = size.images, size.image_size, size.parameters
    pixels = images * image_size * image_size * 3
    held_pixels = pixels if size.held_images is None else size.held_images * image_size * image_size * 3
    if stage == "prepare":
        held = 3 * pixels  # decoded originals, the prepared image and its mask
    elif stage in ("pretrain", "finetune"):
        held = 1.25 * held_pixels + 16 * parameters  # the split in memory; weights, gradients and two Adam moments
    elif stage == "twins":
        held = 1.25 * pixels + 4 * parameters  # the group's images (the pool of backgrounds) and their masks
    elif stage == "discover":
        held = pixels + 8 * images**2 + 4 * parameters  # the region crops and their distance matrix (float64)
    else:
        held = 4 * parameters + ROW_BYTES.get(stage, 0) * images
    held += size.batch_bytes
    rate, key = settings["images_per_second"], rate_key(stage)
    seconds = images * size.passes / rate[key] if key in rate else 0.0  # score, report: no per-image work to speak of
    if size.corrupted:
        seconds += images / rate["corrupt"]  # ImageNet-C corruptions run on the CPU
    return {
        "mem_mb": int(attempt * (settings["mem_mb"] + math.ceil(held / MiB))),
        "runtime": int(settings["min_runtime"] + math.ceil(settings["runtime_margin"] * seconds / 60)),
        "gpu": size.gpus if _holds_gpu(stage, device) else 0,
    }


def rate_key(stage: str) -> str:
    """The `resources.images_per_second` entry a stage's images go at: training's, explain's for the other model
    stages (a forward pass without the backward of a heatmap goes at least as fast), else the stage's own."""
    if stage in ("pretrain", "finetune"):
        return "train"
    return "explain" if stage in ("predict", "discover", "assign_regions", "twins") else stage


def cpu_batch(batch_size: int | str) -> int:
    """The images of an explain batch on the CPU, where `auto` is CPU_BATCH."""
    return CPU_BATCH if batch_size == "auto" else int(batch_size)


def explain_batch_bytes(batch_size: int | str, device: str, per_image: int) -> int:
    """Host memory of one explain batch's activations: none where the config puts the model on a GPU (`cuda`);
    on `cpu`, and on `auto` (which is the CPU on a machine without one), the batch's."""
    return 0 if device.startswith("cuda") else cpu_batch(batch_size) * per_image


def gpu_model(settings: dict[str, Any], device: str, stage: str) -> str:
    """`resources.gpu_model` for the jobs that get a GPU, '' for the others (`--gpus=<model>:0` would be refused)."""
    return settings.get("gpu_model", "") if _holds_gpu(stage, device) else ""


def _holds_gpu(stage: str, device: str) -> bool:
    """A job of a model stage (its declaration says so, stages.py) where the config does not run on the CPU."""
    return stage in gpu_rules() and device != "cpu"


SplitImages = Callable[[str, str], int]  # (dataset, split) -> its items, however the caller knows them


def bookkeeping(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    return JobSize()  # the memory floor and the minimum runtime


def prepare(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    dataset = config["datasets"][wc.dataset]
    return JobSize(int(dataset["shard_size"]), dataset["image_size"])


def _training(config: dict[str, Any], dataset: str, images: int, **size: Any) -> JobSize:
    """A training job over `images` of `dataset`'s split, holding all of them or its streaming windows."""
    entry = config["datasets"][dataset]
    held = training_images_held(images, entry["image_size"], int(entry["shard_size"]), config["training_data"])
    return JobSize(images, entry["image_size"], held_images=held, **size)


def pretrain(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    train = config["models"][wc.model]["pretrain"]
    images = split_images(train["dataset"], train["split"])
    return _training(config, train["dataset"], images, parameters=_parameters(config, wc.model), passes=train["epochs"])


def _parameters(config: dict[str, Any], model: str) -> int:
    return model_adapter(config["models"][model]).approx_parameters()


def finetune(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    method = method_entry(config, wc.method)
    if specs.loads(config, wc.method):  # reads its files, no training split: the model's memory alone
        return JobSize(0, config["datasets"][wc.dataset]["image_size"], _parameters(config, wc.model))
    regions = 1 + config["discovery"]["background_boxes"] if specs.needs_regions(config, wc.method) else 1
    return _training(  # RaVL also encodes each image's regions in every step
        config,
        wc.dataset,
        split_images(wc.dataset, config["train_split"]),
        parameters=_parameters(config, wc.model),
        passes=method["epochs"] * regions,
        gpus=method["processes"],
    )


def _group(config: dict[str, Any], wc: Any, passes: int = 1, batch_bytes: int = 0) -> JobSize:
    """A job over a group of prepared shards (`wc.group` = first-last)."""
    first, last = map(int, wc.group.split("-"))
    dataset = config["datasets"][wc.dataset]
    images = (last - first + 1) * int(dataset["shard_size"])
    return JobSize(images, dataset["image_size"], _parameters(config, wc.model), passes, batch_bytes=batch_bytes)


def explain(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    per_image = explain_bytes_per_image(specs.model_at(config, wc.model, wc.dataset))
    return _group(
        config, wc, batch_bytes=explain_batch_bytes(config["heatmaps"]["batch_size"], config["device"], per_image)
    )


def twins(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    return _group(config, wc, config["twins"]["backgrounds"] + 2)  # as it is, once per twin, its background alone


def predict(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    sets = specs.prediction_sets(config, wc.dataset)
    return JobSize(
        sum(split_images(wc.dataset, s["split"]) for s in sets),
        config["datasets"][wc.dataset]["image_size"],
        _parameters(config, wc.model),
    )


def _regions(config: dict[str, Any], wc: Any, split_images: SplitImages, split: str) -> JobSize:
    return JobSize(  # the full images and their regions through the encoder
        split_images(wc.dataset, split) * (1 + config["discovery"]["background_boxes"]),
        config["datasets"][wc.dataset]["image_size"],
        _parameters(config, wc.model),
    )


def discover(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    return _regions(config, wc, split_images, config["discovery"]["split"])


def assign_regions(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    return _regions(config, wc, split_images, wc.split)


def scored_rows(config: dict[str, Any], wc: Any, split_images: SplitImages) -> JobSize:
    """Score, report and the figures: one row per scored sample, model, method and heatmap method."""
    eval_split = config["eval_split"]
    rows = sum(split_images(d, eval_split) * len(specs.shifts(config, d)) for d in config["datasets"])
    return JobSize(rows * len(config["models"]) * len(config["methods"]) * len(config["heatmaps"]["methods"]))


def job_size(config: dict[str, Any], stage: str, wildcards: Any, split_images: SplitImages) -> JobSize:
    """One job's size from the config and its wildcards (attributes: dataset, model, method, group, split, shift)."""
    declared = rule_stages().get(stage)  # a stage's declaration names the function below that sizes its jobs
    size = globals()[declared.size] if declared and declared.size else scored_rows
    size = size(config, wildcards, split_images)
    shift = getattr(wildcards, "shift", "clean")  # corrupted on the CPU unless read from ImageNet-C's folders
    return replace(size, corrupted=shift != "clean" and "imagenet_c" not in config["datasets"][wildcards.dataset])
