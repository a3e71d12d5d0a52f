"""The data stages: a split listed once into its item index, prepared into shards, and the shards' counts summed."""

from __future__ import annotations

import argparse
import json

from vlm_rationality.io import config_hash
from vlm_rationality.stages import Stage, json_argument


def _items_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", type=json_argument, required=True, help="dataset config (JSON)")
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)


def _items(args: argparse.Namespace) -> None:
    from vlm_rationality.data.prepare import write_item_index

    count = write_item_index(args.spec, args.split, args.out, config_hash([args.spec, args.split]))
    print(f"{args.out}: {count} items")


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    _items_arguments(p)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--items", required=True, help="the split's item index")
    p.add_argument("--shift", default="clean", help="a corruption-severity read from --imagenet-c")
    p.add_argument(
        "--imagenet-c", default=None, help="the published ImageNet-C folders (<corruption>/<severity>/<wnid>/...)"
    )
    p.add_argument(
        "--clean-shard", default=None, help="with --imagenet-c: this shard prepared clean (its samples are kept)"
    )


def _prepare(args: argparse.Namespace) -> None:
    from vlm_rationality.data.prepare import prepare_shard

    counts = prepare_shard(
        args.spec,
        args.split,
        args.shard,
        args.items,
        args.out,
        config_hash([args.spec, args.split]),
        args.shift,
        args.imagenet_c,
        args.clean_shard,
    )
    print(f"{args.out}: {json.dumps(counts)}")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True)
    p.add_argument("shards", nargs="+")


def _report(args: argparse.Namespace) -> None:
    from vlm_rationality.data.prepare import split_report

    print(json.dumps(split_report(args.shards, args.out)))


STAGES = (
    Stage("items", "list a dataset split once into its item index", _items_arguments, _items, size="bookkeeping"),
    Stage(
        "prepare",
        "write one prepared-sample shard of a dataset split from its item index",
        _prepare_arguments,
        _prepare,
        size="prepare",
    ),
    Stage(
        "prepare-report",
        "sum a split's prepared shards' counts into one JSON report",
        _report_arguments,
        _report,
        size="bookkeeping",
    ),
)
