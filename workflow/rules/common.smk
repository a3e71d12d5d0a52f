# The input/params functions every rule file uses (the Snakefile has checked the config). Paths are written
# once, in each rule's `output`; the functions here derive them from `rules.<name>.output`.
import functools
import json
import math
import shlex

from snakemake.exceptions import IncompleteCheckpointException

from vlm_rationality.artefacts import item_count
from vlm_rationality.io import config_hash
from vlm_rationality.plan.sizing import JobSize, gpu_model, job_resources, job_size
from vlm_rationality.plan import jobs as planned
from vlm_rationality.plan import protocol

ENV = "../../envs/vlm-rationality.yaml"
# Jobs run the package of this checkout, also from an environment that does not have it installed
# (--sdm conda), on a cluster too; strict bash as Snakemake's default prefix has it. (Snakemake formats the prefix
# like a command, hence the doubled braces.)
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
EVAL = config["eval_split"]


wildcard_constraints:
    dataset="[^/]+",
    split="[^/]+",
    model="[^/]+",
    method="[^/]+",
    shift="[^/]+",
    heatmap="[^/]+",
    shard="[0-9]{4}",
    group="[0-9]{4}-[0-9]{4}",


def as_json(value):
    """Params are JSON strings: stable (sorted keys), so an unchanged value never triggers a rerun."""
    return json.dumps(value, sort_keys=True)


@functools.cache
def class_prompts(dataset):
    """A dataset's class prompts (JSON), built once per DAG build rather than once per job."""
    return as_json(specs.prompts(config, dataset))


@functools.cache
def cue_groups():
    """Dataset -> {tied or sticker, shards}: the datasets whose classes are tied to a background cue (class ->
    background) or one class to a sticker, with the prepared shards of the scored split that record each sample's
    background or sticker (the score's worst-group accuracy, and ε1/ε2 for the sticker)."""
    groups = {}
    for dataset in config["datasets"]:
        tie = specs.cue_tie(config, dataset)
        if tie is not None:
            groups[dataset] = {**tie, "shards": shard_files(dataset, EVAL)}
    return groups


def sweep_labels():
    """Swept variant -> its label {method, values} (sweep.py), for the score table's setting columns."""
    return {name: entry["sweep"] for name, entry in config["methods"].items() if "sweep" in entry}


@functools.cache
def class_names(dataset):
    return as_json(specs.class_names(config, dataset))


@functools.cache
def split_size(dataset, split):
    """From the config where it tells (synthetic), else from the split's item index, written once by the items
    checkpoint (until then, asking raises what makes Snakemake run it first). Cached per DAG build."""
    size = specs.known_size(config, dataset, split)
    if size is None:
        size = item_count(checkpoints.items.get(dataset=dataset, split=split).output[0])
    return size


def shard_count(dataset, split):
    """A split that lists no item fails here, when the DAG is built, naming it: each job reading it would end in
    its command's usage message instead."""
    size = split_size(dataset, split)
    if size == 0:
        raise ValueError(
            f"config error: datasets.{dataset}.splits.{split}: the split lists no item (its index "
            f"results/data/{dataset}/{split}/items.parquet is empty); check the dataset's root and layout, or a carve "
            "that takes the whole split"
        )
    return math.ceil(size / int(config["datasets"][dataset]["shard_size"]))


def listed_size(dataset, split):
    """A split's items, refusing a split that lists none (shard_count)."""
    shard_count(dataset, split)
    return split_size(dataset, split)


def files(pattern, jobs):
    """A rule's output `pattern` filled in with each job's wildcards (plan/jobs.py), in the jobs' order."""
    return [expand(pattern, **wildcards)[0] for wildcards in jobs]


def shards(first, last):
    return [f"{k:04d}" for k in range(first, last + 1)]


def prerendered(dataset, shift):
    """Whether `shift` of `dataset` is read from the published ImageNet-C folders rather than corrupted on the fly."""
    return shift != "clean" and "imagenet_c" in config["datasets"][dataset]


def shard_files(dataset, split, shift="clean", first=0, last=None):
    """Prepared shards `first`..`last` (default all) of a split, under `shift` where that is read from ImageNet-C."""
    last = shard_count(dataset, split) - 1 if last is None else last
    if prerendered(dataset, shift):
        return expand(
            rules.prepare_shift.output[0], dataset=dataset, split=split, shift=shift, shard=shards(first, last)
        )
    return expand(rules.prepare.output[0], dataset=dataset, split=split, shard=shards(first, last))


def base_file(model):
    return expand(rules.pretrain_base.output.weights, model=model)[0]


def model_spec(model, method=None):
    return specs.base_model_spec(config, model, base_file(model), method)


def base_inputs(model):
    """The workflow-pretrained base, where the model has one (else weights come from `pretrained`)."""
    return [base_file(model)] if "pretrain" in config["models"][model] else []


def checkpoint_file(dataset, model, method):
    """A protocol variant that trains as its base does (e.g. a last-block rollout) explains the base's checkpoint."""
    owner = specs.checkpoint_method(config, model, method)
    return expand(rules.finetune.output.weights, dataset=dataset, model=model, method=owner)[0]


def trained_weights():
    """Every base the workflow pretrains and every fine-tuned checkpoint, each with its sidecar: targets of `all`, so
    one that is deleted is trained again and what reads it is rerun (an intermediate file that is missing would
    otherwise go unnoticed)."""
    return [
        path
        for rule, jobs in ((rules.pretrain_base, planned.pretrain(config)), (rules.finetune, planned.finetune(config)))
        for pattern in rule.output
        for path in files(pattern, jobs)
    ]


def classifier_weights(wildcards):
    """The weights a job that loads a classifier reads: its method's checkpoint where the method trains, else the
    workflow-pretrained base (if any)."""
    if specs.trains(config, wildcards.method):
        return [checkpoint_file(wildcards.dataset, wildcards.model, wildcards.method)]
    return base_inputs(wildcards.model)


def classifier_args(wildcards, input):
    """The CLI arguments of every job that loads a classifier (explain, predict, twins, discover, assign-regions):
    the model, the class prompts and, for a method that trains, its checkpoint (the rule's `weights` input);
    without one the model's own weights classify with the prompts. A param, so a changed model or prompt reruns
    the job; a changed method reruns its fine-tuning, whose new checkpoint reruns the job."""
    args = [
        "--model",
        as_json(model_spec(wildcards.model, wildcards.method)),
        "--prompts",
        class_prompts(wildcards.dataset),
    ]
    if specs.trains(config, wildcards.method):
        args += ["--checkpoint", input.weights[0]]
    return shlex.join(args)


def method_entry(method):
    """A configured method's entry, or a protocol variant's (`flcp@rollout_depth`, protocol.py)."""
    return protocol.method_entry(config, method)


def group_shards(wildcards):
    first, last = map(int, wildcards.group.split("-"))
    return shard_files(wildcards.dataset, EVAL, wildcards.shift, first, last)


def heatmap_files(methods=None, clean_only=False):
    """Every heatmap file of the configured methods (or of `methods`), under every shift or the clean data only."""
    return files(rules.explain.output[0], planned.explain(config, listed_size, methods, clean_only))


def expected_prepared(dataset, splits):
    """split -> the hash its prepared shards carry (data/stage.py's prepare): a model job refuses any other shard."""
    return as_json({split: config_hash([specs.prepare_spec(config, dataset, split), split]) for split in splits})


def twin_files():
    """Every twins file: one per (dataset, model, method) and explain shard group, clean data only. Once a split is
    listed, its smallest explain job is checked against twins.backgrounds, before any twins job runs."""
    for dataset in config["datasets"]:
        error = settings.twins_pool_error(config, dataset, split_size(dataset, EVAL))
        if error:
            raise ValueError(f"config error: {error}")
    return files(rules.twins.output[0], planned.twins(config, listed_size))


def prediction_sets(dataset):
    """[{name, shift, shards}] of one dataset's predict jobs (config.prediction_sets names the splits)."""
    return [
        {"name": s["name"], "shift": s["shift"], "shards": shard_files(dataset, s["split"], s["shift"])}
        for s in specs.prediction_sets(config, dataset)
    ]


def predict_shards(wildcards):
    return sorted({path for s in prediction_sets(wildcards.dataset) for path in s["shards"]})


def prediction_files():
    return files(rules.predict.output[0], planned.predict(config))


def discovery_files():
    return files(rules.discover.output.regions, planned.discover(config))


def mitigated(method):
    """The method whose discovery a RaVL method reads (its `mitigates`); None for every other method."""
    entry = method_entry(method)
    return entry["mitigates"] if specs.needs_regions(config, method) else None


def loaded_files(wildcards):
    """A loading method's files for this (dataset, model), by option: inputs of its finetune job, and in its spec
    so the job reads them and hashes them into the sidecar."""
    return specs.loaded_files(config, wildcards.method, wildcards.dataset, wildcards.model)


def training_regions(wildcards):
    """A RaVL method's input: the training split's regions assigned to the clusters discovered on the method it
    mitigates (so discovery on that model runs before this fine-tuning job)."""
    target = mitigated(wildcards.method)
    if target is None:
        return []
    return expand(
        rules.assign_regions.output[0],
        dataset=wildcards.dataset,
        split=config["train_split"],
        model=wildcards.model,
        method=target,
    )


def heatmap_group(dataset, shift, model, heatmap):
    """The heatmap files of every configured method for one (dataset, shift, model, heatmap method)."""
    groups = planned.groups(config, dataset, listed_size)
    return expand(
        rules.explain.output[0],
        dataset=dataset,
        shift=shift,
        model=model,
        method=config["methods"],
        heatmap=heatmap,
        group=groups,
    )


def figures():
    """Galleries (on each dataset's first shift, normally clean) and, where a dataset is corrupted, shift curves."""
    out = []
    for dataset in config["datasets"]:
        shifts = specs.shifts(config, dataset)
        names = dict(dataset=dataset, model=config["models"], heatmap=config["heatmaps"]["methods"])
        out += expand(rules.gallery.output, shift=shifts[0], **names)
        if any(shift != "clean" for shift in shifts):
            out += expand(rules.shift_curves.output, **names)
    return out


def sensitivity_files():
    """The clean heatmaps of the configured methods and of their protocol variants (protocol.py)."""
    variants = [name for made in protocol.variants(config).values() for name in made]
    return heatmap_files([*config["methods"], *variants], clean_only=True)


@functools.cache
def sized(stage):
    """The rule's resources, sized from the config (sizing.py); memory grows with each retry."""

    def compute(wc, attempt):
        try:
            size = job_size(config, stage, wc, split_size)
        except IncompleteCheckpointException:  # a split not indexed yet: the job is sized again once it is
            size = JobSize()
        return job_resources(config["resources"], config["device"], stage, size, attempt)

    resources = {key: (lambda wc, attempt, key=key: compute(wc, attempt)[key]) for key in ("mem_mb", "runtime", "gpu")}
    if config["resources"].get("gpu_model"):  # --gpus=<model>:N on the GPU jobs only
        resources["gpu_model"] = gpu_model(config["resources"], config["device"], stage)
    return resources


def prepare_reports():
    return [
        path
        for dataset in config["datasets"]
        for path in expand(rules.prepare_report.output[0], dataset=dataset, split=[config["train_split"], EVAL])
    ]


def get_final_output():
    """What `snakemake` with no target makes (the workflow catalog's convention for the default target): the
    tables, score and breakdowns, every trained checkpoint with its sidecar, the split reports and figures, and each
    optional section's outputs where the config has it."""
    optional = [
        (len(set(specs.training_rhos(config).values())) > 1, rules.rho_curve.output),
        ("robustness" in config, rules.robustness.output),
        ("discovery" in config, rules.discovery.output),
        ("twins" in config, rules.validity.output),
    ]
    return [
        *rules.report.output,
        *rules.score.output,
        *rules.breakdowns.output,
        *trained_weights(),
        *prepare_reports(),
        *figures(),
        *(path for wanted, output in optional if wanted for path in output),
    ]
