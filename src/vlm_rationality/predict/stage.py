"""The prediction stages: a classifier's logits on the robustness sets, and on the counterfactual twins."""

from __future__ import annotations

import argparse
import json

from vlm_rationality.io import config_hash
from vlm_rationality.models.classifier_spec import ClassifierSpec
from vlm_rationality.stages import Stage, json_argument, set_threads


def _common(p: argparse.ArgumentParser) -> None:
    ClassifierSpec.add_arguments(p, json_argument)
    p.add_argument("--keys", type=json_argument, required=True, help="dataset/model/method names (JSON)")
    p.add_argument("--batch-size", type=int, required=True, help="images through the model at once")
    p.add_argument("--out", required=True)


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--sets", type=json_argument, required=True, help="[{name, shift, shards}] (JSON)")


def _predict(args: argparse.Namespace) -> None:
    from vlm_rationality.predict.run import predict

    set_threads(args.threads)
    classifier = ClassifierSpec.from_args(args)
    settings = config_hash([*classifier.identity(), args.sets, args.keys])
    meta = predict(classifier, args.sets, args.out, args.device, args.batch_size, settings, args.keys)
    print(f"{args.out}: {json.dumps(meta['counts'])}")


def _twins_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--dataset", type=json_argument, required=True, help="the dataset config of the scored split (JSON)")
    p.add_argument("--split", required=True, help="the scored split")
    p.add_argument("--settings", type=json_argument, required=True, help="{backgrounds, seed} (JSON)")
    p.add_argument("shards", nargs="+", help="the group's prepared shards (also the pool of other backgrounds)")


def _twins(args: argparse.Namespace) -> None:
    from vlm_rationality.predict.twins import predict_twins

    set_threads(args.threads)
    classifier = ClassifierSpec.from_args(args)
    summary = predict_twins(
        classifier,
        args.dataset,
        args.split,
        args.shards,
        args.settings,
        args.out,
        args.device,
        args.batch_size,
        config_hash([*classifier.identity(), args.dataset, args.split, args.settings, args.keys]),
        args.keys,
    )
    print(f"{args.out}: {json.dumps(summary)}")


STAGES = (
    Stage(
        "predict",
        "float32 logits of one (dataset, model, method) on the robustness sets",
        _predict_arguments,
        _predict,
        gpu=True,
        size="predict",
    ),
    Stage(
        "twins",
        "one (dataset, model, method) on the counterfactual twins of a group of scored shards: predictions only",
        _twins_arguments,
        _twins,
        gpu=True,
        size="twins",
    ),
)
