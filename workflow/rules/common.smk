# Config checks and the input/params functions every rule file uses.
import functools
import json
import os

from vlm_rationality import config as settings

settings.check_config(config)

ENV = "../../envs/vlm-rationality.yaml"
# Rules run the package of this checkout, also from an environment that does not have it installed
# (--sdm conda); jobs inherit this environment, on a cluster too.
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(workflow.basedir, "src"), os.getenv("PYTHONPATH")])))
EVAL = config["eval_split"]


wildcard_constraints:
    dataset="[^/]+",
    split="[^/]+",
    model="[^/]+",
    method="[^/]+",
    shift="[^/]+",
    shard="[0-9]{4}",


def as_json(value):
    """Params are JSON strings: stable (sorted keys), so an unchanged value never triggers a rerun."""
    return json.dumps(value, sort_keys=True)


@functools.cache
def shard_count(dataset, split):
    """Cached: a real dataset's count comes from listing its files, which a large split makes slow."""
    return settings.shard_count(config, dataset, split)


def shard_files(dataset, split):
    return [f"results/data/{dataset}/{split}/shard-{k:04d}.parquet" for k in range(shard_count(dataset, split))]


def base_file(model):
    return f"results/models/{model}/base.safetensors"


def model_spec(model):
    return settings.base_model_spec(config, model, base_file(model))


def base_inputs(model):
    """The workflow-pretrained base, where the model has one (else weights come from `pretrained`)."""
    return [base_file(model)] if "pretrain" in config["models"][model] else []


def checkpoint_file(dataset, model, method):
    return f"results/checkpoints/{dataset}/{model}/{method}.safetensors"


def explain_weights(wildcards):
    if settings.trains(config, wildcards.method):
        return [checkpoint_file(wildcards.dataset, wildcards.model, wildcards.method)]
    return base_inputs(wildcards.model)


def heatmap_files():
    return [
        f"results/heatmaps/{dataset}/{shift}/{model}/{method}/{os.path.basename(shard)}"
        for dataset in config["datasets"]
        for shard in shard_files(dataset, EVAL)
        for shift in settings.shifts(config, dataset)
        for model in config["models"]
        for method in config["methods"]
    ]


def prepare_reports():
    return [
        f"results/data/{dataset}/{split}/report.json"
        for dataset in config["datasets"]
        for split in (config["train_split"], EVAL)
    ]
