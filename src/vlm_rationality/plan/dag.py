"""The input, params and resources functions of the workflow's rules, bound once to the checked config and the rules
(common.smk makes one `Dag`; every rules file reads it). Paths are written once, in each rule's `output`; these
functions derive them from `rules.<name>.output`, and the jobs behind them come from jobs.py, which `plan` prices.

A plain module rather than Snakemake code: Snakemake's linter refuses functions beside rules, and here they can be
read and tested like the rest of the package.
"""

from __future__ import annotations

import functools
import json
import math
import shlex
from typing import Any, Callable

from snakemake.exceptions import IncompleteCheckpointException
from snakemake.io import expand

from vlm_rationality.artefacts import item_count
from vlm_rationality.io import config_hash
from vlm_rationality.plan import config as checks
from vlm_rationality.plan import jobs as planned
from vlm_rationality.plan import protocol, specs
from vlm_rationality.plan.sizing import JobSize, gpu_model, job_resources, job_size


def as_json(value: Any) -> str:
    """Params are JSON strings: stable (sorted keys), so an unchanged value never triggers a rerun."""
    return json.dumps(value, sort_keys=True)


def shards(first: int, last: int) -> list[str]:
    return [f"{k:04d}" for k in range(first, last + 1)]


class Dag:
    """What the rules read of one DAG build: caches live as long as the build (one `Dag` per parse)."""

    def __init__(self, config: dict, rules: Any, checkpoints: Any) -> None:
        self.config, self.rules, self.checkpoints = config, rules, checkpoints
        self.eval = config["eval_split"]

    @functools.cache
    def class_prompts(self, dataset: str, method: str | None = None) -> str:
        """A dataset's class prompts (JSON; under `method`'s test-time ensemble, if it has one), built once per DAG
        build rather than once per job."""
        return as_json(specs.prompts(self.config, dataset, method))

    @functools.cache
    def class_names(self, dataset: str) -> str:
        return as_json(specs.class_names(self.config, dataset))

    @functools.cache
    def cue_groups(self) -> dict[str, dict]:
        """Dataset -> {tied or sticker, shards}: the datasets whose classes are tied to a background cue (class ->
        background) or one class to a sticker, with the prepared shards of the scored split that record each sample's
        background or sticker (the score's worst-group accuracy, and ε1/ε2 for the sticker)."""
        groups = {}
        for dataset in self.config["datasets"]:
            tie = specs.cue_tie(self.config, dataset)
            if tie is not None:
                groups[dataset] = {**tie, "shards": self.shard_files(dataset, self.eval)}
        return groups

    def sweep_labels(self) -> dict[str, dict]:
        """Swept variant -> its label {method, values} (sweep.py), for the score table's setting columns."""
        return {name: entry["sweep"] for name, entry in self.config["methods"].items() if "sweep" in entry}

    @functools.cache
    def split_size(self, dataset: str, split: str) -> int:
        """From the config where it tells (synthetic), else from the split's item index, written once by the items
        checkpoint (until then, asking raises what makes Snakemake run it first)."""
        size = specs.known_size(self.config, dataset, split)
        if size is None:
            size = item_count(self.checkpoints.items.get(dataset=dataset, split=split).output[0])
        return size

    def shard_count(self, dataset: str, split: str) -> int:
        """A split that lists no item fails here, when the DAG is built, naming it: each job reading it would end in
        its command's usage message instead."""
        size = self.split_size(dataset, split)
        if size == 0:
            raise ValueError(
                f"config error: datasets.{dataset}.splits.{split}: the split lists no item (its index "
                f"results/data/{dataset}/{split}/items.parquet is empty); check the dataset's root and layout, or a "
                "carve that takes the whole split"
            )
        return math.ceil(size / int(self.config["datasets"][dataset]["shard_size"]))

    def listed_size(self, dataset: str, split: str) -> int:
        """A split's items, refusing a split that lists none (shard_count)."""
        self.shard_count(dataset, split)
        return self.split_size(dataset, split)

    @staticmethod
    def files(pattern: str, jobs: list[dict]) -> list[str]:
        """A rule's output `pattern` filled in with each job's wildcards (jobs.py), in the jobs' order."""
        return [expand(pattern, **wildcards)[0] for wildcards in jobs]

    def prerendered(self, dataset: str, shift: str) -> bool:
        """Whether `shift` of `dataset` is read from the published ImageNet-C folders rather than corrupted on the
        fly."""
        return shift != "clean" and "imagenet_c" in self.config["datasets"][dataset]

    def shard_files(self, dataset: str, split: str, shift: str = "clean", first: int = 0, last: int | None = None):
        """Prepared shards `first`..`last` (default all) of a split, under `shift` where that is read from
        ImageNet-C."""
        last = self.shard_count(dataset, split) - 1 if last is None else last
        names = dict(dataset=dataset, split=split, shard=shards(first, last))
        if self.prerendered(dataset, shift):
            return expand(self.rules.prepare_shift.output[0], shift=shift, **names)
        return expand(self.rules.prepare.output[0], **names)

    def group_shards(self, wildcards) -> list[str]:
        first, last = map(int, wildcards.group.split("-"))
        return self.shard_files(wildcards.dataset, self.eval, wildcards.shift, first, last)

    def base_file(self, model: str) -> str:
        return expand(self.rules.pretrain_base.output.weights, model=model)[0]

    def model_spec(self, model: str, method: str | None = None, dataset: str | None = None) -> dict:
        """The model a job builds, at `dataset`'s input size where the model takes each dataset at its own."""
        return specs.base_model_spec(self.config, model, self.base_file(model), method, dataset)

    def pretrain_spec(self, model: str) -> dict:
        """The model its base is pretrained as: at its pretraining dataset's input size, from scratch or from the
        weights of the model `pretrain.start_from` names."""
        pretrain = self.config["models"][model]["pretrain"]
        spec = self.model_spec(model, dataset=pretrain["dataset"])
        spec.pop("pretrained")
        if "start_from" in pretrain:
            spec["pretrained"] = self.model_spec(pretrain["start_from"])["pretrained"]
        return spec

    def pretrain_inputs(self, model: str) -> list[str]:
        """The base a continued pretraining starts from, where the workflow makes it."""
        start = self.config["models"][model]["pretrain"].get("start_from")
        return self.base_inputs(start) if start is not None else []

    def base_inputs(self, model: str) -> list[str]:
        """The workflow-pretrained base, where the model has one (else weights come from `pretrained`)."""
        return [self.base_file(model)] if "pretrain" in self.config["models"][model] else []

    def checkpoint_file(self, dataset: str, model: str, method: str) -> str:
        """A protocol variant that trains as its base does (e.g. a last-block rollout) explains the base's
        checkpoint."""
        owner = specs.checkpoint_method(self.config, model, method)
        return expand(self.rules.finetune.output.weights, dataset=dataset, model=model, method=owner)[0]

    def classifier_weights(self, wildcards) -> list[str]:
        """The weights a job that loads a classifier reads: its method's checkpoint where the method trains, else
        the workflow-pretrained base (if any)."""
        if specs.trains(self.config, wildcards.method):
            return [self.checkpoint_file(wildcards.dataset, wildcards.model, wildcards.method)]
        return self.base_inputs(wildcards.model)

    def classifier_args(self, wildcards, input) -> str:
        """The CLI arguments of every job that loads a classifier (explain, predict, twins, discover,
        assign-regions): the model, the class prompts and, for a method that trains, its checkpoint (the rule's
        `weights` input); without one the model's own weights classify with the prompts. A param, so a changed model
        or prompt reruns the job; a changed method reruns its fine-tuning, whose new checkpoint reruns the job."""
        args = ["--model", as_json(self.model_spec(wildcards.model, wildcards.method, wildcards.dataset))]
        args += ["--prompts", self.class_prompts(wildcards.dataset, wildcards.method)]
        if specs.trains(self.config, wildcards.method):
            args += ["--checkpoint", input.weights[0]]
        return shlex.join(args)

    def method_entry(self, method: str) -> dict:
        """A configured method's entry, or a protocol variant's (`flcp@rollout_depth`, protocol.py)."""
        return protocol.method_entry(self.config, method)

    def expected_prepared(self, dataset: str, splits: list[str]) -> str:
        """split -> the hash its prepared shards carry (data/stage.py's prepare): a model job refuses any other
        shard."""
        spec = {split: config_hash([specs.prepare_spec(self.config, dataset, split), split]) for split in splits}
        return as_json(spec)

    def heatmap_files(self, methods: list[str] | None = None, clean_only: bool = False) -> list[str]:
        """Every heatmap file of the configured methods (or of `methods`), under every shift or the clean data
        only."""
        jobs = planned.explain(self.config, self.listed_size, methods, clean_only)
        return self.files(self.rules.explain.output[0], jobs)

    def heatmap_group(self, dataset: str, shift: str, model: str, heatmap: str) -> list[str]:
        """The heatmap files of every configured method for one (dataset, shift, model, heatmap method)."""
        groups = planned.groups(self.config, dataset, self.listed_size)
        names = dict(dataset=dataset, shift=shift, model=model, heatmap=heatmap)
        return expand(self.rules.explain.output[0], method=self.config["methods"], group=groups, **names)

    def sensitivity_files(self) -> list[str]:
        """The clean heatmaps of the configured methods and of their protocol variants (protocol.py)."""
        variants = [name for made in protocol.variants(self.config).values() for name in made]
        return self.heatmap_files([*self.config["methods"], *variants], clean_only=True)

    def twin_files(self) -> list[str]:
        """Every twins file: one per (dataset, model, method) and explain shard group, clean data only. Once a
        split is listed, its smallest explain job is checked against twins.backgrounds, before any twins job runs."""
        for dataset in self.config["datasets"]:
            error = checks.twins_pool_error(self.config, dataset, self.split_size(dataset, self.eval))
            if error:
                raise ValueError(f"config error: {error}")
        return self.files(self.rules.twins.output[0], planned.twins(self.config, self.listed_size))

    def prediction_sets(self, dataset: str) -> list[dict]:
        """[{name, shift, shards}] of one dataset's predict jobs (config.prediction_sets names the splits)."""
        return [
            {"name": s["name"], "shift": s["shift"], "shards": self.shard_files(dataset, s["split"], s["shift"])}
            for s in specs.prediction_sets(self.config, dataset)
        ]

    def predict_shards(self, wildcards) -> list[str]:
        return sorted({path for s in self.prediction_sets(wildcards.dataset) for path in s["shards"]})

    def prediction_files(self) -> list[str]:
        return self.files(self.rules.predict.output[0], planned.predict(self.config))

    def discovery_files(self) -> list[str]:
        return self.files(self.rules.discover.output.regions, planned.discover(self.config))

    def loaded_files(self, wildcards) -> list[str]:
        """A loading method's files for this (dataset, model), by option: inputs of its finetune job, and in its
        spec so the job reads them and hashes them into the sidecar."""
        return specs.loaded_files(self.config, wildcards.method, wildcards.dataset, wildcards.model)

    def validation_split(self, method: str) -> list[str]:
        """The split a method selects its epoch on (`early_stopping.split`), if it does."""
        stop = self.method_entry(method).get("early_stopping")
        return [stop["split"]] if stop else []

    def validation_shards(self, wildcards) -> list[str]:
        """A method's held-out shards for early stopping: inputs of its finetune job, and in its spec."""
        splits = self.validation_split(wildcards.method)
        return [path for split in splits for path in self.shard_files(wildcards.dataset, split)]

    def validation_spec(self, wildcards) -> dict:
        """What a method's spec adds for early stopping: the held-out shards and, to select on the worst group, the
        dataset's cue tie (the score table's groups)."""
        stop = self.method_entry(wildcards.method).get("early_stopping")
        if not stop:
            return {}
        spec = {"validation": self.validation_shards(wildcards)}
        if stop.get("metric") == "worst_group":
            tie = specs.cue_tie(self.config, wildcards.dataset)
            if tie is None:
                raise ValueError(
                    f"methods.{wildcards.method}.early_stopping.metric: worst_group needs a cue tied to the classes, "
                    f"and dataset {wildcards.dataset!r} records none; select on accuracy"
                )
            spec["validation_groups"] = tie
        return spec

    def training_regions(self, wildcards) -> list[str]:
        """A RaVL method's input: the training split's regions assigned to the clusters discovered on the method it
        mitigates (its `mitigates`; so discovery on that model runs before this fine-tuning job)."""
        if not specs.needs_regions(self.config, wildcards.method):
            return []
        target = self.method_entry(wildcards.method)["mitigates"]
        names = dict(dataset=wildcards.dataset, model=wildcards.model, split=self.config["train_split"])
        return expand(self.rules.assign_regions.output[0], method=target, **names)

    @functools.cache
    def sized(self, stage: str) -> dict[str, Callable | str]:
        """The rule's resources, sized from the config (sizing.py); memory grows with each retry."""

        def compute(wc, attempt):
            try:
                size = job_size(self.config, stage, wc, self.split_size)
            except IncompleteCheckpointException:  # a split not indexed yet: the job is sized again once it is
                size = JobSize()
            return job_resources(self.config["resources"], self.config["device"], stage, size, attempt)

        keys = ("mem_mb", "runtime", "gpu")
        resources: dict = {key: (lambda wc, attempt, key=key: compute(wc, attempt)[key]) for key in keys}
        if self.config["resources"].get("gpu_model"):  # --gpus=<model>:N on the GPU jobs only
            resources["gpu_model"] = gpu_model(self.config["resources"], self.config["device"], stage)
        return resources

    def trained_weights(self) -> list[str]:
        """Every base the workflow pretrains and every fine-tuned checkpoint, each with its sidecar: targets of
        `all`, so one that is deleted is trained again and what reads it is rerun (an intermediate file that is
        missing would otherwise go unnoticed)."""
        made = ((self.rules.pretrain_base, planned.pretrain), (self.rules.finetune, planned.finetune))
        return [
            path for rule, jobs in made for pattern in rule.output for path in self.files(pattern, jobs(self.config))
        ]

    def figures(self) -> list[str]:
        """Galleries (on each dataset's first shift, normally clean) and, where a dataset is corrupted, shift
        curves."""
        out = []
        for dataset in self.config["datasets"]:
            shifts = specs.shifts(self.config, dataset)
            names = dict(dataset=dataset, model=self.config["models"], heatmap=self.config["heatmaps"]["methods"])
            out += expand(self.rules.gallery.output, shift=shifts[0], **names)
            if any(shift != "clean" for shift in shifts):
                out += expand(self.rules.shift_curves.output, **names)
        return out

    def get_final_output(self) -> list[str]:
        """What `snakemake` with no target makes (the workflow catalog's name for it): the tables, score and
        breakdowns, every trained checkpoint with its sidecar, the split reports and figures, and each optional
        section's outputs where the config has it."""
        rules, config = self.rules, self.config
        optional = [
            (len(set(specs.training_rhos(config).values())) > 1, rules.rho_curve.output),
            ("robustness" in config, rules.robustness.output),
            ("discovery" in config, rules.discovery.output),
            ("twins" in config, rules.validity.output),
            ("factors" in config, rules.factors.output),
            ("replicates" in config, rules.replicates.output),
        ]
        splits = [config["train_split"], self.eval]
        reports = [
            path
            for dataset in config["datasets"]
            for path in expand(rules.prepare_report.output[0], dataset=dataset, split=splits)
        ]
        return [
            *rules.report.output,
            *rules.score.output,
            *rules.breakdowns.output,
            *self.trained_weights(),
            *reports,
            *self.figures(),
            *(path for wanted, output in optional if wanted for path in output),
        ]
