"""The training stages: a base model pretrained on captioned shards, and a model fine-tuned with one method."""

from __future__ import annotations

import argparse
import json
import os
import sys

from vlm_rationality.stages import Stage, json_argument, set_threads


def _training_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=json_argument, required=True, help="model config (JSON)")
    p.add_argument(
        "--training-data",
        type=json_argument,
        default=None,
        help="the config's training_data (JSON): when to stream the split from its shards; default in memory",
    )
    p.add_argument("--out", required=True)


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    _training_arguments(p)
    p.add_argument("--train", type=json_argument, required=True, help="pretraining settings (JSON)")
    p.add_argument("shards", nargs="+")


def _pretrain(args: argparse.Namespace) -> None:
    from vlm_rationality.finetune.run import pretrain_base

    set_threads(args.threads)
    sidecar = pretrain_base(args.model, args.train, args.shards, args.out, args.device, args.training_data)
    print(json.dumps(sidecar["metrics"]), f"({sidecar['seconds']} s on {sidecar['device']})")


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    _training_arguments(p)
    p.add_argument("--method", type=json_argument, required=True, help="method config (JSON)")
    p.add_argument("--prompts", type=json_argument, required=True, help="class prompts (JSON list)")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes (torchrun, one per GPU; gloo on CPU), sharing --threads",
    )
    p.add_argument("shards", nargs="*", help="the training split's prepared shards (none: a method that loads)")


def _finetune(args: argparse.Namespace) -> None:
    from vlm_rationality.finetune.run import finetune

    if args.processes > 1 and "LOCAL_RANK" not in os.environ:  # data-parallel: this command again, once per rank
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.processes}",
            "-m",
            "vlm_rationality",
            *sys.argv[1:],
        ]
        os.execv(sys.executable, argv)
    set_threads(args.threads and max(1, args.threads // args.processes))  # --threads: the whole job's
    sidecar = finetune(args.model, args.method, args.prompts, args.shards, args.out, args.device, args.training_data)
    print(json.dumps(sidecar["metrics"]), f"({sidecar['seconds']} s on {sidecar['device']})")


STAGES = (
    Stage(
        "pretrain",
        "contrastively pretrain a base model on captioned shards",
        _pretrain_arguments,
        _pretrain,
        gpu=True,
        size="pretrain",
    ),
    Stage(
        "finetune",
        "fine-tune a model with one method; writes a checkpoint and sidecar",
        _finetune_arguments,
        _finetune,
        gpu=True,
        size="finetune",
    ),
)
