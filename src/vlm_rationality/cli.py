"""`vlm-rationality <command>`: one command per workflow stage (declared in its folder's `stage.py`, stages.py).

Stage commands take their settings as JSON (`--spec`, `--model`, …): the workflow passes each rule's params
through unchanged, and the hash of those settings goes into every file the command writes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from vlm_rationality.stages import Stage, json_argument, stages


class _Version(argparse.Action):
    """`--version`: computed only when asked (it runs git), unlike argparse's own version action's string."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from vlm_rationality.provenance import describe, provenance

        print(describe(provenance()))
        parser.exit()


def _model_stage_arguments(p: argparse.ArgumentParser) -> None:
    """What every model stage takes besides its own settings: where it runs, and what it may read."""
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--expect-prepared",
        type=json_argument,
        default=None,
        help="split -> config hash (JSON): every prepared shard read must be of one of them",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-rationality", description=__doc__)
    parser.add_argument("--version", action=_Version, help="the version, its git commit and the libraries', and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in stages().values():
        p = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        p.set_defaults(stage=stage)
        if stage.gpu:
            _model_stage_arguments(p)
        stage.arguments(p)
    return parser


def _prepared_paths(args: argparse.Namespace) -> list[str]:
    """The prepared shards a model stage reads: its positional shards, or discover's and assign's lists, or
    predict's sets, and a fine-tuning method's validation split."""
    paths = list(getattr(args, "shards", None) or []) + list(getattr(args, "discovered", None) or [])
    paths += (getattr(args, "method", None) or {}).get("validation", [])
    return paths + [path for entry in getattr(args, "sets", None) or [] for path in entry["shards"]]


def _run(stage: Stage, args: argparse.Namespace) -> None:
    if not stage.gpu:
        stage.run(args)
        return
    from vlm_rationality.device import gpu_slot

    if args.expect_prepared:
        from vlm_rationality.artefacts import check_prepared

        check_prepared(_prepared_paths(args), args.expect_prepared)
    with gpu_slot(args.device) as args.device:  # one GPU per job, held while it runs
        stage.run(args)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vlm_rationality").setLevel(logging.INFO)  # e.g. the checkpoint tensors a model leaves unused
    args = build_parser().parse_args(argv)
    _run(args.stage, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
