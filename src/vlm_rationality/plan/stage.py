"""`plan`: jobs, device hours, memory and disk of a config's grid, before any job runs (cost.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vlm_rationality.stages import Stage

# The checkout's workflow schema (the package runs from its checkout: pip install -e, or the workflow's PYTHONPATH).
SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--configfile",
        nargs="+",
        default=["config.yaml"],
        help="the workflow's config file(s), later ones overlaying earlier ones (default: config.yaml)",
    )
    p.add_argument("--schema", default=str(SCHEMA), help="the workflow's config schema")


def _run(args: argparse.Namespace) -> None:
    import yaml

    from vlm_rationality.plan.config import ConfigError, check_config, check_files
    from vlm_rationality.plan.cost import markdown, plan

    try:
        check_files(args.configfile)
        config: dict[str, Any] = {}
        for path in args.configfile:  # later files overlay earlier ones, as Snakemake merges --configfile
            _overlay(config, yaml.safe_load(Path(path).read_text()) or {})
        assumed: list[str] = []  # what is not on disk yet: noted, priced at published sizes
        check_config(config, yaml.safe_load(Path(args.schema).read_text()), assumed)
        stages = plan(config, assumed)
    except (ConfigError, FileNotFoundError) as err:  # the user's to fix: one message, not a traceback
        print(f"config error:\n{err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(markdown(stages, config, assumed))


def _overlay(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _overlay(base[key], value)
        else:
            base[key] = value


STAGES = (
    Stage(
        "plan",
        "jobs, device hours, memory and disk of a config's grid, before any job runs",
        _arguments,
        _run,
    ),
)
