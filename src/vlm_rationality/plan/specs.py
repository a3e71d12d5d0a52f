"""What the workflow and the jobs read from a checked config: each `*_spec` returns exactly what one stage depends
on (the workflow passes it as the rule's params, so a changed value reruns exactly the jobs that depend on it), and
the small questions the rules ask of it (a method trains? loads? which shifts, which sets?). The checks that make a
config safe to read this way are config.py's.
"""

from __future__ import annotations

from typing import Any

from vlm_rationality.data import build_dataset
from vlm_rationality.open_clip_data import templated_set
from vlm_rationality.plan.protocol import method_entry, model_entry, split_variant
from vlm_rationality.plan.sweep import LABEL as SWEEP_LABEL
from vlm_rationality.registry import declared

Config = dict[str, Any]
FOLDER_SPLIT = "folder-"  # robustness.ood_folders.<name> is prepared as the split folder-<name> of a dataset
STIMULI_SPLIT = "stimuli"  # robustness.cue_conflict_folder, prepared as this split of a dataset
SHIFTED_SPLIT = "shifted-"  # robustness.shifted_sets.<name> is prepared as the split shifted-<name> of a dataset


def loaded_files(config: Config, method: str, dataset: str, model: str) -> dict[str, str]:
    """The files a loading method reads for one (dataset, model), by option, placeholders filled."""
    entry = method_entry(config, method)
    files = finetune_methods()[entry["kind"]].get("files", [])
    return {name: entry[name].format(dataset=dataset, model=model) for name in files if name in entry}


def loads(config: Config, method: str) -> bool:
    """A method whose classifier is loaded from files, not trained (its registration's `loads`)."""
    return bool(finetune_methods()[method_entry(config, method)["kind"]].get("loads"))


def shifts(config: Config, dataset: str) -> list[str]:
    """A dataset's own `shifts` list, else the global one (the paper evaluates ImageNet-C on ImageNet only)."""
    return list(config["datasets"][dataset].get("shifts", config["shifts"]))


def finetune_methods() -> dict[str, dict[str, Any]]:
    return declared("vlm_rationality.finetune", "FINETUNE_METHODS")


def trains(config: Config, method: str) -> bool:
    """As the method's registration states: a method that trains has a checkpoint to explain."""
    return finetune_methods()[config["methods"][split_variant(method)[0]]["kind"]]["trains"]


def needs_regions(config: Config, method: str) -> bool:
    """A method that trains on the regions of a discovery (RaVL's Stage 2), as its registration states."""
    facts = finetune_methods().get(config["methods"][split_variant(method)[0]]["kind"], {})  # unknown: reported apart
    return bool(facts.get("regions"))


RUNS_ON = ("processes", "threads")  # how a method's training is spread over the machine, not what it computes


def finetune_spec(config: Config, method: str) -> Config:
    """What a method's checkpoint depends on: not `processes` or `threads` (the same training spread over more
    workers), nor its heatmap settings; the prompt template where the method's registration says it reads it (CoOp)."""
    spec = {
        key: value
        for key, value in method_entry(config, method).items()
        if key not in (*RUNS_ON, "heatmaps", SWEEP_LABEL)
    }
    if finetune_methods()[spec["kind"]].get("template"):
        spec["prompt_template"] = config["prompt_template"]
    return spec


def checkpoint_method(config: Config, model: str, method: str) -> str:
    """Whose checkpoint a (variant) method explains: its base's where the variant trains the same way."""
    base, switch = split_variant(method)
    same = finetune_spec(config, method) == finetune_spec(config, base) and model_entry(
        config, model, method
    ) == model_entry(config, model, base)
    return base if switch is None or same else method


def robustness_datasets(config: Config) -> list[str]:
    """The datasets the robustness metrics cover: those with the `robustness.validation` split."""
    section = config.get("robustness")
    if section is None:
        return []
    return [name for name, spec in config["datasets"].items() if section["validation"] in spec["splits"]]


def ood_sets(config: Config) -> list[str]:
    """The OOD sets of the robustness table: the configured OOD splits, then the OOD folders."""
    section = config.get("robustness", {})
    return [*section.get("ood", []), *section.get("ood_folders", {})]


def prediction_sets(config: Config, dataset: str) -> list[Config]:
    """What the predict stage runs a dataset's classifiers on: [{name, split, shift}] (robustness.py names the test
    split under shift s `test/s`; an OOD folder is the split `folder-<name>`)."""
    section = config["robustness"]
    sets = [{"name": section["validation"], "split": section["validation"], "shift": "clean"}]
    sets += [
        {"name": f"test/{shift}", "split": config["eval_split"], "shift": shift} for shift in shifts(config, dataset)
    ]
    named = [*section["ood"], *([section["cue_conflict"]] if "cue_conflict" in section else [])]
    sets += [{"name": split, "split": split, "shift": "clean"} for split in named]
    if "cue_conflict_folder" in section:
        sets.append({"name": STIMULI_SPLIT, "split": STIMULI_SPLIT, "shift": "clean"})
    sets += [{"name": f"test/{name}", "split": SHIFTED_SPLIT + name, "shift": "clean"} for name in shifted_sets(config)]
    return sets + [{"name": name, "split": FOLDER_SPLIT + name, "shift": "clean"} for name in section["ood_folders"]]


def shifted_sets(config: Config) -> dict[str, Config]:
    """robustness.shifted_sets: name -> {adapter, root} (ImageNet-V2, -R, -A, -Sketch on disk)."""
    return config.get("robustness", {}).get("shifted_sets", {})


def restricted_sets(config: Config) -> list[str]:
    """The prediction sets scored on their own classes' logits only (ImageNet-R, -A: their adapters say so)."""
    from vlm_rationality.data import DATASET_ADAPTERS

    return [
        f"test/{name}"
        for name, entry in shifted_sets(config).items()
        if DATASET_ADAPTERS.get(entry["adapter"]).restricted
    ]


def cue_conflict_set(config: Config) -> str | None:
    """The set the shape bias is measured on: the cue-conflict split, or the stimuli folder's split."""
    section = config.get("robustness", {})
    return section.get("cue_conflict", STIMULI_SPLIT if "cue_conflict_folder" in section else None)


def known_size(config: Config, dataset: str, split: str) -> int | None:
    """A split's size where the config alone tells it (synthetic); else None: the item index tells."""
    return build_dataset(prepare_spec(config, dataset, split)).known_size(split)


def training_rhos(config: Config) -> dict[str, float]:
    """Dataset -> the spurious strength `rho` of its training split, for the datasets whose split declares one."""
    train = config["train_split"]
    return {
        name: float(spec["splits"][train]["rho"])
        for name, spec in config["datasets"].items()
        if "rho" in spec.get("splits", {}).get(train, {})
    }


def stage_threads(config: Config, stage: str, method: str | None = None) -> int:
    """CPU threads of one job of `stage` (per process): `threads`; for a fine-tuning job its method's `threads` (if
    set); for explain jobs `heatmaps.threads` (if set) plus `heatmaps.workers`, the corruption processes (a clean
    job's model gets them all)."""
    if stage == "finetune" and method is not None:
        return method_entry(config, method).get("threads", config["threads"])
    if stage != "explain":
        return config["threads"]
    return config["heatmaps"].get("threads", config["threads"]) + config["heatmaps"].get("workers", 0)


def shard_groups(count: int, per_job: int) -> list[tuple[int, int]]:
    """Consecutive (first, last) shard ranges of at most `per_job` shards: one explain job, one heatmap file each."""
    return [(first, min(first + per_job, count) - 1) for first in range(0, count, per_job)]


# The `heatmaps` keys a map depends on (explain.heatmaps.HeatmapSettings' fields but `method`; a test keeps the two
# equal): an allow-list, so a key of how jobs run (threads, workers, shards_per_job) never reaches the settings.
MAP_SETTINGS = ("target", "start_block", "batch_size", "amp", "compile")


def heatmap_spec(config: Config, heatmap_method: str, method: str) -> Config:
    """What one heatmap method's maps of one (fine-tuning) method depend on: the global settings with the method's
    own `heatmaps` overrides (e.g. the official code's last-block rollout for ZS/FLCP); not the other heatmap
    methods of the list, nor how shards are grouped into jobs, so adding a heatmap method reruns no existing map."""
    spec = {key: value for key, value in config["heatmaps"].items() if key in MAP_SETTINGS}
    spec.update(method_entry(config, method).get("heatmaps", {}))
    return {"method": heatmap_method, **spec}


def prepare_spec(config: Config, dataset: str, split: str) -> Config:
    """The dataset config narrowed to one split and the splits carved with it (a carved split, its source and the
    source's other carved splits decide each other's items): resizing another split reruns nothing here. The split
    `folder-<name>` is the OOD folder `robustness.ood_folders.<name>` under this dataset's eval transform; the split
    `shifted-<name>` the shifted test set `robustness.shifted_sets.<name>`, labelled by this dataset's synsets (where
    they are not ImageNet-1K's own, in its order)."""
    section = config.get("robustness", {})
    folders = section.get("ood_folders", {})
    folder = folders.get(split[len(FOLDER_SPLIT) :]) if split.startswith(FOLDER_SPLIT) else None
    adapter, extra = "image_folder", {}
    if split == STIMULI_SPLIT and "cue_conflict_folder" in section:
        folder, adapter = section["cue_conflict_folder"], "cue_conflict_stimuli"
    shifted = shifted_sets(config).get(split[len(SHIFTED_SPLIT) :]) if split.startswith(SHIFTED_SPLIT) else None
    if shifted is not None:
        folder, adapter, extra = shifted["root"], shifted["adapter"], {"synsets": parent_synsets(config, dataset)}
    if folder is not None:
        source = config["datasets"][dataset]
        transform = {key: source[key] for key in ("resize", "interpolation") if key in source}
        return {
            "adapter": adapter,
            "root": folder,
            "image_size": source["image_size"],
            "shard_size": source["shard_size"],
            **transform,
            **{key: value for key, value in extra.items() if value is not None},
            "splits": {split: {"masks": False}},
        }
    spec = {key: value for key, value in config["datasets"][dataset].items() if key not in ("shifts", "imagenet_c")}
    carved_from = spec["splits"][split].get("carve", {}).get("from", split)
    spec["splits"] = {
        name: entry
        for name, entry in spec["splits"].items()
        if name in (split, carved_from) or entry.get("carve", {}).get("from") == carved_from
    }
    return spec


def parent_synsets(config: Config, dataset: str) -> list[str] | None:
    """The synsets a shifted test set of `dataset` is labelled by: None where they are ImageNet-1K's 1000 in the
    canonical order (the set's adapter knows those); fails where the dataset's classes are not synsets."""
    from vlm_rationality.data.imagenet_x import imagenet_synsets

    synsets = build_dataset(prepare_spec(config, dataset, config["eval_split"])).label_synsets()
    if synsets is None:
        raise ValueError(f"the classes of dataset {dataset!r} are not ImageNet synsets; a shifted test set needs them")
    return None if synsets == imagenet_synsets() else synsets


def sized_for(config: Config, entry: Config, dataset: str | None) -> Config:
    """A model entry as it takes `dataset`: under `input_size: dataset`, at the dataset's image_size (the adapter's
    `image_size`, its position embedding resampled); any other entry, or no dataset, as it is."""
    if dataset is None or entry.get("input_size") != "dataset":
        return entry
    return {**entry, "image_size": config["datasets"][dataset]["image_size"]}


def model_at(config: Config, model: str, dataset: str | None) -> Config:
    """The configured model's entry at `dataset`'s input size (see sized_for)."""
    return sized_for(config, config["models"][model], dataset)


def base_model_spec(
    config: Config, model: str, base_path: str, method: str | None = None, dataset: str | None = None
) -> Config:
    """The model config a stage builds from (as a protocol variant `method` sees it, at `dataset`'s input size): a
    workflow-pretrained base replaces `pretrained` by its file."""
    entry = sized_for(config, model_entry(config, model, method) if method else config["models"][model], dataset)
    spec = {key: value for key, value in entry.items() if key != "pretrain"}
    if "pretrain" in entry:
        spec["pretrained"] = base_path
    return spec


def ensemble(config: Config, method: str) -> list[str] | None:
    """A method's test-time ensemble of templates (`templates`, zs.py: a list, or a set open_clip ships), if any."""
    chosen = method_entry(config, method).get("templates")
    return templated_set(chosen) if isinstance(chosen, str) else chosen


def prompts(config: Config, dataset: str, method: str | None = None) -> list[str] | list[list[str]]:
    """One prompt per class from `prompt_template`; under a method's ensemble, each class's prompt under every one
    of its templates."""
    built = build_dataset(config["datasets"][dataset])
    templates = ensemble(config, method) if method is not None else None
    if templates is None:
        return built.prompts(config["prompt_template"])
    return [list(class_prompts) for class_prompts in zip(*(built.prompts(t) for t in templates))]


def cue_tie(config: Config, dataset: str) -> dict[str, Any] | None:
    """What a dataset ties to its classes, for the worst-group accuracy (class x cue present/absent), ε1/ε2 and
    Precision@10: {tied: class -> its background} (the background cue) or {sticker: the class a sticker is tied
    to}; None where the dataset knows no cue."""
    built = build_dataset(config["datasets"][dataset])
    tied, sticker = built.tied_backgrounds(), built.sticker_class()
    return {"tied": tied} if tied is not None else {"sticker": sticker} if sticker is not None else None


def class_names(config: Config, dataset: str) -> list[str]:
    return list(build_dataset(config["datasets"][dataset]).class_names)


def region_names(config: Config, dataset: str) -> dict[str, list[str] | None]:
    """What a region's `feature` id names: {classes: object regions', backgrounds: background regions' (or None)}."""
    built = build_dataset(config["datasets"][dataset])
    return {"classes": list(built.class_names), "backgrounds": built.background_names()}
