"""The explain stage: heatmaps, predictions and RMA of one classifier and heatmap method on a group of shards."""

from __future__ import annotations

import argparse
import json

from vlm_rationality.io import config_hash
from vlm_rationality.models.classifier_spec import ClassifierSpec
from vlm_rationality.stages import Stage, json_argument, set_threads


def _arguments(p: argparse.ArgumentParser) -> None:
    ClassifierSpec.add_arguments(p, json_argument)
    p.add_argument("--heatmaps", type=json_argument, required=True, help="heatmap settings (JSON)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes corrupting the next batches of a shifted job (out of --threads)",
    )
    p.add_argument("--keys", type=json_argument, required=True, help="dataset/shift/model/method names (JSON)")
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+", help="prepared shards, explained in this order")


def _run(args: argparse.Namespace) -> None:
    from vlm_rationality.explain.run import explain

    set_threads(args.threads and max(1, args.threads - args.workers))  # the rest run the corruption workers
    classifier = ClassifierSpec.from_args(args)
    settings = config_hash([*classifier.identity(), args.heatmaps, args.keys])
    summary = explain(classifier, args.heatmaps, args.shards, args.out, args.device, args.keys, settings, args.workers)
    print(f"{args.out}: {json.dumps(summary)}")


STAGES = (
    Stage(
        "explain",
        "heatmaps, predictions and RMA for a group of prepared shards, into one file",
        _arguments,
        _run,
        gpu=True,
        size="explain",
    ),
)
