"""Config checks the JSON schema cannot make (what the workflow then reads of the config is specs.py's).

The schema (workflow/schemas/config.schema.yaml) checks types, ranges and required keys; this module checks
names against the registries and references between sections, so that a bad config fails before any job
runs with a message naming the key.
"""

from __future__ import annotations

import copy
import math
import os
import re
import string
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from vlm_rationality import environment
from vlm_rationality.data import DATASET_ADAPTERS, Dataset, build_dataset, imagenet_c
from vlm_rationality.data.corruptions import parse_shift
from vlm_rationality.models.adapter import MODEL_ADAPTERS, model_adapter
from vlm_rationality.plan.schema import Schema, validate
from vlm_rationality.plan.specs import (
    FOLDER_SPLIT,
    SHIFTED_SPLIT,
    STIMULI_SPLIT,
    finetune_methods,
    known_size,
    model_at,
    needs_regions,
    prepare_spec,
    robustness_datasets,
    shard_groups,
    shifts,
    trains,
)
from vlm_rationality.plan.sweep import LABEL as SWEEP_LABEL
from vlm_rationality.plan.sweep import SweepError, expand, family
from vlm_rationality.registry import declared

Config = dict[str, Any]
# A dataset, split, model or method name becomes a path component of every result it has, and a word of a shell
# command: not only dots, no leading dash.
PLAIN_NAME = re.compile(r"^(?!\.+$)(?!-)[A-Za-z0-9_.-]+$")
# The filesystem allows 255 bytes per path component; a name gets suffixes (`.safetensors.json`, a temp file's
# `.tmp-<pid>`) and a sweep variant gets `.<key>=<value>`, so names stay well below it.
MAX_NAME = 96
MAX_VARIANT = 200  # a swept variant `<method>.<key>=<value>...`: its longest file adds `.safetensors.json` and a temp
MAX_VALUES = 100_000  # maps, lists and scalars a config may expand to (default: ~200; largest study: ~500)
MAX_FILE_BYTES = 1 << 20  # of a config file (the default is 4 KiB)
RAVL_KS = (2, 5)  # RaVL's discovery tries K from 2|Y| to 5|Y| - 1 (discover/clusters.k_range; a test keeps them equal)
MAX_SEED = 2**32 - 1  # numpy's, scikit-learn's and K-Medoids' largest
MIN_ITERATIONS = 100  # of score.bootstrap_iterations, unless 0 (no intervals)
TRAINING_REQUIRED = ["lr", "epochs", "batch_size"]  # of every method that trains (not zs, not a loaded one)
PLACEHOLDERS = {"dataset", "model"}  # what a loaded method's file paths may hold, filled per job
OVERLAY_HINT = (
    "a --configfile replaces config.yaml; to change a few keys, give config.yaml first and yours after it "
    "(snakemake --configfile config.yaml mine.yaml): later files overlay earlier ones"
)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _dataset_schema(schema: Schema, adapter: type) -> Schema:
    """The schema's dataset entry closed over the adapter's declared options and split options."""
    entry = copy.deepcopy(schema["properties"]["datasets"]["additionalProperties"])
    entry["properties"].update(adapter.options)
    entry["additionalProperties"] = False
    entry["properties"]["splits"]["additionalProperties"] = {
        "type": "object",
        "properties": adapter.split_options,
        "additionalProperties": False,
    }
    return entry


def _model_schema(schema: Schema, adapter: type) -> Schema:
    """The schema's model entry closed over the adapter's declared options (models/<adapter>.py)."""
    entry = copy.deepcopy(schema["properties"]["models"]["additionalProperties"])
    entry["properties"].update(adapter.options)
    entry["unevaluatedProperties"] = False
    return {**entry, "definitions": schema["definitions"]}  # `pretrain`'s $ref resolves in it


def check_config(config: Config, schema: Schema, assumed: list[str] | None = None) -> None:
    """Validate `config` against the closed `schema` (filling in its defaults), then check what the schema
    cannot: names against the registries, each adapter's own options, references between sections, and
    settings that cannot work with a model or device. Every error is reported, each naming its key. A swept
    method is replaced by its variants first (sweep.py); an error in a variant names the swept entry's key.
    `assumed` (for `plan`): a file or folder that is not there yet (a dataset root, weights) is noted in it, not an
    error, so a grid is priced before its data are fetched."""
    _check_size(config)
    errors = _non_finite(config)
    origin: dict[str, str] = {}
    if isinstance(config.get("methods"), dict):
        try:
            config["methods"], origin = expand(config["methods"])
        except SweepError as err:
            raise ConfigError("\n".join([*errors, str(err)])) from None
    errors += _swept_keys(_seed_errors(config), origin)
    found = validate(config, schema) + _method_option_errors(config, schema)
    schema_errors = _swept_keys(sorted(found, key=lambda error: error.split(":")[0].split(".")), origin)
    if any(re.match(r"config: '[a-z_]+' is a required property", error) for error in schema_errors):
        schema_errors.append(f"config: {OVERLAY_HINT}")
    errors += schema_errors + _swept_keys(_registry_errors(config, origin), origin)
    errors += _section_errors(config, schema, assumed, _dirty_sections(schema_errors))
    errors = _swept_keys(errors, origin)
    if errors:
        raise ConfigError("\n".join(errors))
    if "discovery" in config:  # the one default that names another key (the schema states it)
        config["discovery"].setdefault("split", config["eval_split"])


def _check_size(config: Config) -> None:
    """Refuse a config that expands to more than MAX_VALUES values before anything walks it: YAML aliases let a
    file of a few lines stand for billions of values (every check and message would expand them)."""
    count, stack = 0, [config]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(
                f"config: more than {MAX_VALUES:,} values (maps, lists and settings), nested YAML aliases (*name) "
                "expand to this many; write the config out without repeating aliases inside aliases"
            )
        if isinstance(value, dict):
            stack += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            stack += value


def _dirty_sections(schema_errors: list[str]) -> set[str]:
    """The top-level sections a schema error was found in (a missing one included): the checks that read them are
    left out, the others still run, so every error a config has comes in one pass."""
    dirty = set()
    for error in schema_errors:
        key = error.split(":")[0]
        missing = re.match(r"config: '([a-z_]+)' is a required property", error)
        dirty.add(missing.group(1) if missing else key.split(".")[0].split("[")[0])
    return dirty


def _section_errors(config: Config, schema: Schema, assumed: list[str] | None, dirty: set[str]) -> list[str]:
    """What the schema cannot check, each check run where the sections it reads passed the schema."""

    def clean(*sections: str) -> bool:
        return dirty.isdisjoint(sections)

    errors: list[str] = []
    depths: dict[str, int] = {}
    if clean("models", "datasets"):
        depths, errors = _model_errors(config, schema, assumed)
    if clean("datasets", "eval_split", "train_split"):
        errors += _dataset_errors(config, schema, assumed)
    if clean("methods", "models", "datasets", "device", "heatmaps"):
        errors += _method_errors(config, schema, depths, assumed)
    if clean("shifts", "datasets"):
        errors += _shift_errors(config)
    if clean("heatmaps", "models", "device"):
        errors += _heatmap_errors("heatmaps", config["heatmaps"], config["device"], depths)
        if config["heatmaps"].get("compile"):
            errors += [
                f"heatmaps.compile: model {name!r} ({model['adapter']}): its adapter's attention does not run under "
                "torch.compile (open_clip's does)"
                for name, model in config["models"].items()
                if model["adapter"] in MODEL_ADAPTERS and not MODEL_ADAPTERS.get(model["adapter"]).compiles
            ]
    if clean("robustness", "datasets", "eval_split", "train_split"):
        errors += _robustness_errors(config)
    if clean("factors", "datasets"):
        errors += _factor_errors(config)
    errors += environment.errors()
    if clean("datasets", "twins"):
        errors += _dilation_errors(config)
    iterations = config["score"]["bootstrap_iterations"] if clean("score") else 0
    if 0 < iterations < MIN_ITERATIONS:
        errors.append(
            f"score.bootstrap_iterations: {iterations} replicates leave fewer than 3 a side of a 95% interval; use at "
            f"least {MIN_ITERATIONS}, or 0 for no intervals (the tables then say so)"
        )
    if clean("discovery", "methods", "datasets"):
        errors += _discovery_errors(config)
    if clean("methods", "discovery"):
        errors += _ravl_errors(config)
    if clean("twins", "datasets", "heatmaps"):
        errors += _twins_errors(config)
    if clean("replicates", "methods"):
        errors += _replicates_errors(config)
    return errors


def _replicates_errors(config: Config) -> list[str]:
    """The reference of the outcomes over runs is a configured method (its name before `.seed=`)."""
    reference = config.get("replicates", {}).get("reference")
    known = sorted({family(name) for name in config["methods"]})
    if reference is None or reference in known:
        return []
    return [f"replicates.reference: no method {reference!r}; use one of {', '.join(known)}"]


def _method_schema(schema: Schema, facts: dict[str, Any]) -> Schema:
    """The schema's method entry closed over the options (and required keys) the method's kind declares at
    registration (`register("ravl", options={...}, required=[...])` in vlm_rationality/finetune/<kind>.py); a kind
    that trains on a discovery's regions (`regions=True`) takes `mitigates`, the method whose discovery it reads; one
    that selects its epoch (`selects=True`) takes `early_stopping`."""
    entry = copy.deepcopy(schema["properties"]["methods"]["additionalProperties"])
    entry["properties"].update(facts.get("options", {}))
    entry["required"] = [*entry["required"], *facts.get("required", [])]
    if facts.get("regions"):
        entry["properties"]["mitigates"] = schema["definitions"]["mitigates"]
        entry["required"].append("mitigates")
    if facts.get("selects"):
        entry["properties"]["early_stopping"] = schema["definitions"]["early_stopping"]
    if facts["trains"] and not facts.get("loads"):
        entry["required"] += TRAINING_REQUIRED
    entry["unevaluatedProperties"] = False
    return {**entry, "definitions": schema["definitions"]}  # the entry's $ref resolve in it


def _method_option_errors(config: Config, schema: Schema) -> list[str]:
    """Each method against its kind's closed schema (its options' defaults filled in); a kind nobody registered is
    reported with the registries."""
    methods = config.get("methods")
    if not isinstance(methods, dict):
        return []
    declared_kinds = finetune_methods()
    return [
        error
        for name, method in methods.items()
        if isinstance(method, dict) and method.get("kind") in declared_kinds
        for error in validate(method, _method_schema(schema, declared_kinds[method["kind"]]), ["methods", name])
    ]


def _dataset_errors(config: Config, schema: Schema, assumed: list[str] | None = None) -> list[str]:
    """Each dataset against its adapter's declared options, its splits, and what its adapter finds on disk."""
    errors = []
    for name, dataset in config["datasets"].items():
        key = f"datasets.{name}"
        if dataset["adapter"] not in DATASET_ADAPTERS:
            continue  # reported with the registries
        found = validate(
            dataset, _dataset_schema(schema, DATASET_ADAPTERS.get(dataset["adapter"])), [*key.split(".", 1)]
        )
        errors += found
        for split in (config["eval_split"], config["train_split"]):
            if split not in dataset["splits"]:
                errors.append(f"{key}.splits: no {split!r} split (named by eval_split/train_split)")
        for split, entry in dataset["splits"].items():
            if entry.get("carve", {}).get("from") == config["eval_split"]:
                errors.append(
                    f"{key}.splits.{split}.carve.from: {config['eval_split']!r} is the split that is scored; "
                    f"carve from the training split ({config['train_split']!r})"
                )
        if not found:
            try:
                built = build_dataset(dataset)
                if config["eval_split"] in dataset["splits"] and not built.needs_masks(config["eval_split"]):
                    errors.append(
                        f"{key}.splits.{config['eval_split']}: the scored split has no object masks (masks: false, "
                        "or images with no object), but RMA, PT and IR are a heatmap's mass on the object; give it "
                        "masks or set eval_split to a split that has them"
                    )
                if "imagenet_c" in dataset:
                    errors += [
                        f"{key}.imagenet_c: {error}"
                        for error in imagenet_c.folder_errors(built, dataset["imagenet_c"], shifts(config, name))
                    ]
            except FileNotFoundError as err:
                (errors if assumed is None else assumed).append(f"{key}: {err}")
            except (KeyError, ValueError, TypeError) as err:
                errors.append(f"{key}: {err}")
    return errors


def _model_errors(config: Config, schema: Schema, assumed: list[str] | None = None) -> tuple[dict[str, int], list[str]]:
    """Each model against its adapter's declared options and checks (and its vision depth, which heatmap settings
    are checked against), its input size against its datasets, and where its base comes from."""
    depths, errors = {}, []
    for name, model in config["models"].items():
        key = f"models.{name}"
        if model["adapter"] not in MODEL_ADAPTERS:
            continue  # reported with the registries
        found = validate(model, _model_schema(schema, MODEL_ADAPTERS.get(model["adapter"])), ["models", name])
        errors += found
        if not found:
            try:
                adapter = model_adapter(model)
                try:
                    adapter.check()
                except FileNotFoundError as err:  # weights not fetched yet: the architecture still sizes the plan
                    if assumed is None:
                        raise
                    assumed.append(f"{key}: {err}")
                depths[name] = adapter.vision_layers()
                errors += _input_size_errors(config, name)
            except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
                errors.append(f"{key}: {err}")
        pretrain = model.get("pretrain")
        if pretrain is not None:
            if "pretrained" in model:
                errors.append(f"{key}: give either `pretrain` (the workflow trains the base) or `pretrained`, not both")
            source = config["datasets"].get(pretrain["dataset"])
            if source is None:
                errors.append(f"{key}.pretrain.dataset: no dataset {pretrain['dataset']!r} in datasets")
            elif pretrain["split"] not in source["splits"]:
                errors.append(
                    f"{key}.pretrain.split: dataset {pretrain['dataset']!r} has no split {pretrain['split']!r}"
                )
            errors += _start_from_errors(config, name)
    return depths, errors


def _start_from_errors(config: Config, model: str) -> list[str]:
    """A pretraining that continues from another model's weights: one of the same architecture that has weights,
    and no chain of them that comes back to where it began (a model further down the chain is checked as its own)."""
    key, entry = f"models.{model}.pretrain.start_from", config["models"][model]
    start = entry["pretrain"].get("start_from")
    if start is None:
        return []
    source = config["models"].get(start)
    if source is None:
        return [f"{key}: no model {start!r} in models"]
    if (source.get("adapter"), source.get("arch")) != (entry.get("adapter"), entry.get("arch")):
        return [f"{key}: {start!r} is {source.get('arch')}, not {entry.get('arch')}: its weights do not fit"]
    if "pretrain" not in source and source.get("pretrained") in (None, "", "none"):
        return [f"{key}: {start!r} has no weights to start from (neither pretrain nor pretrained)"]
    chain = [model]
    while start is not None and start not in chain:
        chain.append(start)
        start = config["models"].get(start, {}).get("pretrain", {}).get("start_from")
    return (
        []
        if start is None
        else [f"{key}: the models' start_from come back to {start!r} ({' -> '.join([*chain, start])})"]
    )


def _early_stopping_errors(config: Config, key: str, split: str) -> list[str]:
    """The split a method selects its epoch on is held out: neither the one it trains on nor the one it is scored on,
    and every dataset has it."""
    if split in (config["train_split"], config["eval_split"]):
        role = "trained on" if split == config["train_split"] else "scored"
        return [
            f"{key}.early_stopping.split: {split!r} is the split that is {role}; select on a held-out one (synthetic: "
            "a split of the training rho; on disk: one carved from the training split)"
        ]
    return [
        f"{key}.early_stopping.split: dataset {name!r} has no split {split!r}; add it to datasets.{name}.splits"
        for name, dataset in config["datasets"].items()
        if split not in dataset.get("splits", {})
    ]


def _method_errors(
    config: Config, schema: Schema, depths: dict[str, int], assumed: list[str] | None = None
) -> list[str]:
    """Each method's settings against what its kind states at registration (trains, head, regions, frozen
    features), and its own heatmap settings."""
    kinds = finetune_methods()
    # A setting of a method that trains nothing is refused unless it is the schema's default (filled in, or harmless).
    training_settings = {
        **schema["definitions"]["training"]["properties"],
        "head_init": {},
        "processes": {"default": 1},
        "threads": {},
    }
    errors = []
    for name, method in config["methods"].items():
        key = f"methods.{name}"
        if method["kind"] not in kinds:
            continue  # reported with the registries
        facts = kinds[method["kind"]]
        if not facts["trains"] or facts.get("loads"):
            does = "loads its classifier" if facts.get("loads") else "trains nothing"
            errors += [
                f"{key}.{setting}: {method['kind']} {does}, so it takes no training setting"
                for setting, entry in training_settings.items()
                if setting in method and method[setting] != entry.get("default", object())
            ]
        if facts.get("loads"):
            errors += _loaded_errors(config, key, method, facts.get("files", []), assumed)
        if method.get("early_stopping"):
            errors += _early_stopping_errors(config, key, method["early_stopping"]["split"])
        if method["augment"] and (not facts["trains"] or facts.get("frozen_features")):
            errors.append(
                f"{key}.augment: {method['kind']} trains no image tower (it "
                f"{'trains nothing' if not facts['trains'] else 'reads image embeddings extracted once'})"
            )
        elif method["augment"] and facts.get("regions"):
            errors.append(
                f"{key}.augment: {method['kind']} cuts each region at the box its discovery assigned; random crops "
                "would move the boxes, so drop augment"
            )
        if method.get("context", {}).get("init") == "template" and "length" in method["context"]:
            errors.append(
                f"{key}.context.length: init: template takes the length of the template's words before "
                "{name}; drop length"
            )
        if "head" in method and facts.get("head") != "linear" and "linear_head" not in method:
            errors.append(
                f"{key}.head: {method['kind']} classifies with its prompts; only a trained linear head (lp, ft) "
                "takes `head`"
            )
        if method.get("head") == "linear" and "head_init" in method:
            errors.append(
                f"{key}.head_init: head: linear is the official code's nn.Linear with its default init; "
                "drop head_init, or use head: cosine"
            )
        errors += _heatmap_errors(f"{key}.heatmaps", method.get("heatmaps", {}), config["device"], depths)
    return errors


def _loaded_errors(
    config: Config, key: str, method: Config, files: Sequence[str], assumed: list[str] | None = None
) -> list[str]:
    """A loaded classifier (`kind: external`): one source (a checkpoint of this project, or weights and/or a linear
    head), `head` stated for a linear head, and every file there for every (dataset, model) it is filled in for."""
    given = [name for name in files if name in method]
    if not given:
        return [f"{key}: {method['kind']} loads a classifier; give checkpoint, or weights and/or linear_head"]
    if "checkpoint" in given and len(given) > 1:
        return [f"{key}: checkpoint is a whole classifier; give it alone, or weights and/or linear_head instead"]
    errors = []
    if "linear_head" in given and "head" not in method:
        errors.append(
            f"{key}.head: say what the linear head reads: cosine (the L2-normalised image embedding, as WiSE-FT's "
            "and FLYP's heads) or linear (the raw embedding, as a plain logistic-regression probe)"
        )
    for name in given:
        fields = {field for _, field, _, _ in string.Formatter().parse(method[name]) if field is not None}
        if fields - PLACEHOLDERS:
            errors.append(
                f"{key}.{name}: {method[name]!r} names {', '.join(sorted(fields - PLACEHOLDERS))}; a path may "
                "hold {dataset} and {model} only"
            )
            continue
        for dataset in config["datasets"]:
            for model in config["models"]:
                path = method[name].format(dataset=dataset, model=model)
                if not os.path.isfile(path):
                    (errors if assumed is None else assumed).append(
                        f"{key}.{name}: {path} (dataset {dataset}, model {model}) is not a file; fetch it, or "
                        "use {dataset}/{model} in the path"
                    )
    return errors


def _dilation_errors(config: Config) -> list[str]:
    """A dilation bounded by the image it acts on: grown by half the image side, a centred object covers the whole
    image and every map scores RMA 1 (PT 100 for every method, with no message otherwise)."""
    errors = []
    twins = config.get("twins", {}).get("masks", [])
    for name, dataset in config["datasets"].items():
        size = int(dataset["image_size"])
        for key, variant in [(f"datasets.{name}.mask", dataset.get("mask", "exact"))] + [
            (f"twins.masks ({name})", v) for v in twins
        ]:
            if variant.startswith("dilate-") and int(variant.split("-")[1]) >= size // 2:
                errors.append(
                    f"{key}: {variant} on {size}-px images grows a centred object over the whole image, so every "
                    f"map would score RMA 1; use dilate-N with N below {size // 2}"
                )
    return errors


def _shift_errors(config: Config) -> list[str]:
    errors = []
    for key, shift_list in [("shifts", config["shifts"])] + [
        (f"datasets.{name}.shifts", d["shifts"]) for name, d in config["datasets"].items() if "shifts" in d
    ]:
        for shift in shift_list:
            try:
                parse_shift(shift)
            except ValueError as err:
                errors.append(f"{key}: {err}")
    return errors


def _heatmap_errors(key: str, heatmaps: Config, device: str, depths: dict[str, int]) -> list[str]:
    """Heatmap settings, global (`heatmaps`) or a method's own: a rollout's first block within every model's depth,
    fp16 only on CUDA."""
    errors = []
    start = heatmaps.get("start_block")
    for model_name, depth in depths.items():
        if start is not None and not -depth <= start < depth:
            errors.append(
                f"{key}.start_block: {start} is outside the {depth} vision blocks of model "
                f"{model_name!r} (0 is the first, -1 the last)"
            )
    if heatmaps.get("amp") == "fp16" and device == "cpu":
        errors.append(f"{key}.amp: fp16 is mixed precision on CUDA, but device is cpu; use bf16 or none")
    return errors


def _leaves(value: Any, path: str = "", key: Any = None) -> Iterator[tuple[str, Any, Any]]:
    """(key path, key, value) of every setting at any depth, a sweep's label left out (it repeats its variant's
    values)."""
    if isinstance(value, dict):
        for name, sub in value.items():
            if name != SWEEP_LABEL:
                yield from _leaves(sub, f"{path}.{name}" if path else str(name), name)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _leaves(sub, f"{path}[{i}]", key)
    else:
        yield path, key, value


def _non_finite(config: Config) -> list[str]:
    """NaN and Inf pass every range of the schema (NaN compares false), so they are refused here, anywhere."""
    return [
        f"{path or 'config'}: {value} is not a finite number; give a finite value"
        for path, _, value in _leaves(config)
        if isinstance(value, float) and not math.isfinite(value)
    ]


def _seed_errors(config: Config) -> list[str]:
    """Every `seed`, at any depth (methods, datasets, adapters' options, carves), within what all its readers take:
    numpy, scikit-learn and K-Medoids want 0 … 2³²−1, and torch fails on a larger one after the work before it."""
    errors = []
    for path, key, value in _leaves(config):
        if key == "seed" and isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_SEED:
            shown = str(value) if len(str(value)) <= 24 else f"{str(value)[:12]}... ({len(str(value))} digits)"
            errors.append(f"{path}: {shown} is not a seed; give an integer from 0 to {MAX_SEED}")
    return errors


def _name_error(key: str, name: Any) -> list[str]:
    if not isinstance(name, str) or not PLAIN_NAME.match(name):
        return [
            f"{key}: the name {name!r} is a path component of its results; use letters, digits, '_', '.' and "
            "'-', not only dots and not a leading '-'"
        ]
    if len(name) > MAX_NAME:
        return [
            f"{key}: the name {name[:24]}... is {len(name)} characters; it becomes part of file names (the "
            f"filesystem allows 255 bytes, and the workflow adds suffixes), so use at most {MAX_NAME}"
        ]
    return []


def _registry_errors(config: Config, origin: dict[str, str]) -> list[str]:
    """Names: path components that must be plain, and plugins that must be registered. Made on any config, valid
    or not, so a config's schema and registry errors are all reported at once."""
    errors = []
    sections = {
        section: config[section]
        for section in ("datasets", "models", "methods")
        if isinstance(config.get(section), dict)
    }
    for section, entries in sections.items():
        for name in entries:
            errors += _name_error(section, origin.get(name, name) if section == "methods" else name)
            if section == "methods" and name in origin and len(name) > MAX_VARIANT:  # a swept variant's own name
                errors.append(
                    f"methods.{origin[name]}: its variant {name[:40]}... is {len(name)} characters, a file name of its "
                    f"results (the filesystem allows 255 bytes with the workflow's suffixes); shorten the method's "
                    f"name or its swept values to keep every variant within {MAX_VARIANT}"
                )
    for name, dataset in sections.get("datasets", {}).items():
        if isinstance(dataset, dict) and isinstance(dataset.get("splits"), dict):
            for split in dataset["splits"]:
                errors += _name_error(f"datasets.{name}.splits", split)
    registries = [
        ("datasets", "adapter", "dataset adapter", list(DATASET_ADAPTERS)),
        ("models", "adapter", "model adapter", list(MODEL_ADAPTERS)),
        ("methods", "kind", "method", list(finetune_methods())),
    ]
    for section, key, what, known in registries:
        for name, entry in sections.get(section, {}).items():
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, str) and value not in known:
                errors.append(f"{section}.{name}.{key}: unknown {what} {value!r}; known: {', '.join(known)}")
    heatmaps = config.get("heatmaps", {})
    heatmap_methods = declared("vlm_rationality.explain", "HEATMAP_METHODS")
    for heatmap in heatmaps.get("methods", []) if isinstance(heatmaps, dict) else []:
        if isinstance(heatmap, str) and heatmap not in heatmap_methods:
            errors.append(f"heatmaps.methods: unknown heatmap method {heatmap!r}; known: {', '.join(heatmap_methods)}")
    templates = [("prompt_template", config.get("prompt_template"))]
    for name, entry in sections.get("methods", {}).items():
        listed = entry.get("templates") if isinstance(entry, dict) else None
        templates += (
            [(f"methods.{name}.templates[{k}]", t) for k, t in enumerate(listed)] if isinstance(listed, list) else []
        )
    for key, template in templates:
        problem = _template_problem(template) if isinstance(template, str) else None
        if problem is not None:
            errors.append(
                f"{key}: {template[:80]!r} cannot be filled in ({problem}); only a plain {{name}} is a "
                "placeholder (no format spec or conversion), write a literal brace as {{ or }}"
            )
    return errors


def _template_problem(template: str) -> str | None:
    """What keeps `template` from being filled with a class name, found by parsing it, never formatting it (a format
    spec such as {name:>300000000} would allocate before failing)."""
    try:
        fields = []
        for _, field, spec, conversion in string.Formatter().parse(template):
            if field is not None and (field != "name" or spec or conversion):
                shown = field + (f"!{conversion}" if conversion else "") + (f":{spec[:20]}" if spec else "")
                return f"the placeholder {{{shown}}}"
            fields += [field] if field is not None else []
    except ValueError as err:
        return str(err)
    return None if fields else "no {name}: every class would get the same prompt"


def _input_size_errors(config: Config, model: str) -> list[str]:
    """Every dataset is prepared once, at its image_size, for every model: each model's input size must match, or
    the model takes each dataset at its own size (`input_size: dataset`), which its adapter must be able to."""
    entry = config["models"][model]
    if entry.get("input_size") == "dataset":
        return _resampled_size_errors(config, model)
    size = model_adapter(entry).input_size()
    return [
        f"datasets.{name}.image_size: {dataset['image_size']} is not the input size of model {model!r} ({size}); "
        f"prepare the dataset at {size}"
        for name, dataset in config["datasets"].items()
        if dataset["adapter"] in DATASET_ADAPTERS and dataset["image_size"] != size
    ]


def _resampled_size_errors(config: Config, model: str) -> list[str]:
    entry, key = config["models"][model], f"models.{model}"
    if "image_size" not in MODEL_ADAPTERS.get(entry["adapter"]).options:
        return [f"{key}.input_size: the {entry['adapter']} adapter cannot take another input size (no image_size)"]
    if "image_size" in entry:
        return [f"{key}: give image_size (one size for every dataset) or input_size: dataset, not both"]
    errors = []
    for name, dataset in config["datasets"].items():
        if dataset["adapter"] in DATASET_ADAPTERS:
            try:
                model_adapter(model_at(config, model, name)).input_size()
            except ValueError as err:
                errors.append(f"datasets.{name}.image_size: model {model!r} cannot take it: {err}")
    return errors


def check_files(paths: list[str]) -> None:
    """A key given twice in one YAML map is refused with both lines (YAML loaders silently keep the last)."""
    errors = []

    class Strict(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` keys may be overridden: that is what a merge is for
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in lines:
                    errors.append(
                        f"{path}: the key {key!r} is given twice, on lines {lines[key]} and {line}; "
                        "keep one (YAML would silently keep the last)"
                    )
                lines[key] = line
            return super().construct_mapping(node, deep)

    for path in paths:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            errors.append(f"{path}: {size:,} bytes; a config is a few KiB (at most {MAX_FILE_BYTES:,} bytes)")
            continue
        try:
            yaml.load(Path(path).read_text(), Loader=Strict)
        except yaml.YAMLError as err:
            errors.append(f"{path}: not valid YAML: {err}")
    if errors:
        raise ConfigError("\n".join(errors))


def _discovery_errors(config: Config) -> list[str]:
    section = config.get("discovery")
    if section is None:
        return []
    errors = [
        f"discovery.methods: no method {name!r} in methods"
        for name in section.get("methods", [])
        if name not in config["methods"]
    ]
    if "max_regions" in section:
        for name, dataset in config["datasets"].items():
            try:
                classes = len(build_dataset(dataset).class_names)
            except (KeyError, ValueError, TypeError, FileNotFoundError):
                continue  # reported with the dataset
            fewest, most = RAVL_KS[0] * classes, RAVL_KS[1] * classes - 1
            if section["max_regions"] <= most:
                errors.append(
                    f"discovery.max_regions: {section['max_regions']} regions cannot form the {most} clusters RaVL "
                    f"tries for the {classes} classes of dataset {name!r} (K runs {fewest}…{most}); "
                    f"give more than {most}"
                )
    split = section.get("split")
    if split is not None:
        errors += [
            f"datasets.{name}.splits: no {split!r} split (named by discovery.split)"
            for name, dataset in config["datasets"].items()
            if split not in dataset["splits"]
        ]
    return errors


def _ravl_errors(config: Config) -> list[str]:
    """A RaVL method mitigates a trained method that discovery examines, and is not itself mitigated in a cycle."""
    errors = []
    for name, entry in config["methods"].items():
        if not needs_regions(config, name):
            continue
        target = entry["mitigates"]
        if target not in config["methods"]:
            errors.append(f"methods.{name}.mitigates: no method {target!r} in methods")
        elif config["methods"][target]["kind"] not in finetune_methods():
            continue  # its unknown kind is reported on its own
        elif needs_regions(config, target) or not trains(config, target):
            errors.append(
                f"methods.{name}.mitigates: {target!r} must be a fine-tuned method other than ravl; its "
                "discovery names the regions to ignore"
            )
        elif "discovery" not in config:
            errors.append(f"methods.{name}: ravl reads the discovery of {target!r}; add a `discovery` section")
        elif target not in (config["discovery"].get("methods") or config["methods"]):
            errors.append(f"discovery.methods: add {target!r}, the method that methods.{name} mitigates")
    return errors


def _twins_errors(config: Config) -> list[str]:
    """On disk, a sample's twins take their backgrounds from the other images of its explain job's shards: checked
    here against the smallest job where the scored split's size is in the config, else by `twins_pool_error` once
    the split is listed (the workflow does, before any twins job)."""
    if config.get("twins") is None:
        return []
    errors = []
    for name, dataset in config["datasets"].items():
        if dataset["adapter"] in DATASET_ADAPTERS:  # an unknown one is reported above
            size = known_size(config, name, config["eval_split"])
            error = twins_pool_error(config, name, size)
            errors += [error] if error else []
    return errors


def twins_pool_error(config: Config, dataset: str, split_size: int | None) -> str | None:
    """Why the smallest explain job of `dataset`'s scored split (of `split_size` images: the last one holds what the
    others leave over; None: unknown yet, so only a full job is checked) cannot give every sample its twins'
    backgrounds, or None. A generator that renders its own backgrounds needs no pool."""
    entry = config["datasets"][dataset]
    if config.get("twins") is None or DATASET_ADAPTERS.get(entry["adapter"]).twins is not Dataset.twins:
        return None
    shard, per_job = int(entry["shard_size"]), int(config["heatmaps"]["shards_per_job"])
    need = config["twins"]["backgrounds"] + 2  # the sample, its backgrounds and a donor
    smallest, where = shard * per_job, "shard_size x heatmaps.shards_per_job"
    if split_size is not None:
        groups = shard_groups(math.ceil(split_size / shard), per_job)
        if split_size - groups[-1][0] * shard < smallest:
            smallest = split_size - groups[-1][0] * shard
            where = f"the last explain job of its {split_size} scored images"
    if smallest >= need:
        return None
    return (
        f"twins.backgrounds: {config['twins']['backgrounds']} backgrounds per sample need at least {need} images per "
        f"explain job, but dataset {dataset!r} has {smallest} ({where}); lower twins.backgrounds"
        + (f" to {smallest - 2}" if smallest > 2 else "")
        + ", or choose shard_size and heatmaps.shards_per_job so that every job holds enough"
    )


def _factor_errors(config: Config) -> list[str]:
    """Each dataset the factor table breaks down is configured and has factor annotations."""
    errors = []
    for dataset in config.get("factors", {}).get("datasets", []):
        if dataset not in config["datasets"]:
            errors.append(f"factors.datasets: {dataset!r} is not a configured dataset: {', '.join(config['datasets'])}")
            continue
        adapter = config["datasets"][dataset]["adapter"]
        if adapter in DATASET_ADAPTERS and not DATASET_ADAPTERS.get(adapter).factor_source:
            with_factors = [name for name in DATASET_ADAPTERS if DATASET_ADAPTERS.get(name).factor_source]
            errors.append(
                f"factors.datasets: {dataset!r} ({adapter}) has no visual-factor annotations; adapters that have "
                f"them: {', '.join(sorted(with_factors))}"
            )
    return errors


def _robustness_errors(config: Config) -> list[str]:
    section = config.get("robustness")
    if section is None:
        return []
    errors = []
    if section["validation"] in (config["eval_split"], config["train_split"]):
        errors.append(
            f"robustness.validation: {section['validation']!r} is the "
            f"{'test' if section['validation'] == config['eval_split'] else 'training'} "
            "split; fit the temperature on a held-out split of the training distribution (a synthetic "
            "`val` split with the training rho, or on disk one carved from the training split: "
            "`val: {masks: false, carve: {from: train, fraction: 0.1}}`)"
        )
    if not robustness_datasets(config):
        errors.append(f"robustness.validation: no dataset has a {section['validation']!r} split")
    named = [*section["ood"], *([section["cue_conflict"]] if "cue_conflict" in section else [])]
    for dataset in robustness_datasets(config):
        errors += [
            f"datasets.{dataset}.splits: no {split!r} split (named by robustness)"
            for split in named
            if split not in config["datasets"][dataset]["splits"]
        ]
    if "cue_conflict" in section and "cue_conflict_folder" in section:
        errors.append(
            "robustness.cue_conflict_folder: give the cue-conflict images once, as a split (cue_conflict) "
            "or as the stimuli folder"
        )
    elif "cue_conflict_folder" in section:
        for dataset in robustness_datasets(config)[:1]:
            try:
                build_dataset(prepare_spec(config, dataset, STIMULI_SPLIT))
            except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
                errors.append(f"robustness.cue_conflict_folder: {err}")
    folders = [FOLDER_SPLIT + name for name in section["ood_folders"]]
    folders += [SHIFTED_SPLIT + name for name in section["shifted_sets"]]
    folders += [STIMULI_SPLIT] if "cue_conflict_folder" in section else []
    for dataset in robustness_datasets(config):
        errors += [
            f"datasets.{dataset}.splits.{split}: robustness prepares a folder as the split {split!r} of this dataset "
            "(the two would share their files); rename the split"
            for split in folders
            if split in config["datasets"][dataset]["splits"]
        ]
    for name in section["ood_folders"]:
        if name in section["ood"]:
            errors.append(f"robustness.ood_folders.{name}: an OOD split has this name; rename the folder's entry")
        for dataset in robustness_datasets(config)[:1]:  # the folder is listed the same way for every dataset
            try:
                build_dataset(prepare_spec(config, dataset, FOLDER_SPLIT + name))
            except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
                errors.append(f"robustness.ood_folders.{name}: {err}")
    return errors + _shifted_set_errors(config)


def _shifted_set_errors(config: Config) -> list[str]:
    """A shifted test set is a row of the robustness table under its name: it must not take a corruption's name,
    and each robustness dataset must label it (its classes are ImageNet synsets) from a folder in its layout."""
    errors = []
    for name in config["robustness"]["shifted_sets"]:
        for dataset in robustness_datasets(config):
            if name in shifts(config, dataset):
                errors.append(
                    f"robustness.shifted_sets.{name}: dataset {dataset!r} has a shift of this name; rename it"
                )
            try:
                build_dataset(prepare_spec(config, dataset, SHIFTED_SPLIT + name))
            except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
                errors.append(f"robustness.shifted_sets.{name}: {err}")
    return errors


def _swept_keys(errors: list[str], origin: dict[str, str]) -> list[str]:
    """`methods.ft.optimizer=sgd.lr=1e-05.lr: ...` -> `methods.ft.lr: ... (variant ft.optimizer=sgd.lr=1e-05)`: the
    key a user wrote; an error every variant shares is reported once."""
    out: list[str] = []
    for error in errors:
        for variant in sorted(origin, key=len, reverse=True):
            prefix = f"methods.{variant}"
            if error.startswith((prefix + ".", prefix + ":")):
                error = f"methods.{origin[variant]}{error[len(prefix) :]} (variant {variant})"
                break
        unique = re.sub(r" \(variant [^)]*\)$", "", error)
        if all(re.sub(r" \(variant [^)]*\)$", "", seen) != unique for seen in out):
            out.append(error)
    return out
