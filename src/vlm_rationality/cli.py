"""`vlm-rationality <command>`: what the workflow rules call, plus `inspect` for any artefact."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import pyarrow.parquet as pq

from vlm_rationality.io import read_metadata

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {}


def command(name: str, help: str):
    """Register a sub-command: `arguments` adds its options, the decorated function runs it."""

    def register(arguments: Callable[[argparse.ArgumentParser], None]):
        def wrap(run: Callable[[argparse.Namespace], None]):
            COMMANDS[name] = (help, arguments, run)
            return run

        return wrap

    return register


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a Parquet artefact (prepared shard, heatmap shard, metrics table)")
    parser.add_argument("--rows", type=int, default=5, help="rows to show (default 5)")


@command("inspect", "print the schema, vlm_rationality metadata and first rows of a Parquet artefact")(_inspect_arguments)
def inspect(args: argparse.Namespace) -> None:
    parquet = pq.ParquetFile(args.path)
    print(f"{args.path}: {parquet.metadata.num_rows} rows, {parquet.metadata.num_row_groups} row group(s)")
    print(json.dumps(read_metadata(args.path), indent=2))
    print(parquet.schema_arrow.remove_metadata())
    binary = {"image", "mask", "heatmap", "logits"}
    columns = [name for name in parquet.schema_arrow.names if name not in binary]
    head = next(parquet.iter_batches(batch_size=max(args.rows, 1), columns=columns), None)
    if head is not None:
        for row in head.to_pylist()[: args.rows]:
            print(row)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vlm-rationality", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, arguments, _run) in COMMANDS.items():
        arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
