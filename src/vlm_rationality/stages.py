"""The stage registry: a workflow stage is declared once, in its folder's `stage.py`, and everything that needs to
know what the stage is reads that declaration: the command line (`cli.py` dispatches over it) and the job sizing
(which stages hold a GPU). A new stage is its declaration plus its rule (docs/architecture.md, "Adding a stage").

The declarations are light to import (`argparse` and the package's light modules): a stage's `run` imports the
stack it needs when it runs, so `--help`, the config check and cheap stages never pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

Arguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], None]


@dataclass(frozen=True)
class Stage:
    """`name` is the command (`vlm-rationality <name>`); its rule, and the rule's sizing, is `name` with `_` for `-`.

    `gpu`: a model stage. It takes --device, --threads and --expect-prepared (every prepared shard it reads is
    checked first), holds one GPU slot while it runs, and its jobs ask the scheduler for a GPU unless the config
    runs on the CPU. `size`: the function of `plan/sizing.py` that sizes one of its jobs from the config and the
    job's wildcards, by name (the declarations stay light: sizing reads the dataset and model adapters); without
    one, a job is sized as one over the score table's rows.
    """

    name: str
    help: str
    arguments: Arguments
    run: Run
    gpu: bool = False
    size: str | None = None

    @property
    def rule(self) -> str:
        return self.name.replace("-", "_")


@cache
def stages() -> dict[str, Stage]:
    """Every declared stage by command name: the `STAGES` of each `vlm_rationality.<folder>.stage` module."""
    package = Path(__file__).parent
    found: dict[str, Stage] = {}
    for folder in sorted(info.name for info in pkgutil.iter_modules([str(package)]) if info.ispkg):
        if not (package / folder / "stage.py").is_file():
            continue
        for stage in importlib.import_module(f"{__package__}.{folder}.stage").STAGES:
            if stage.name in found:
                raise KeyError(f"stage {stage.name!r} is declared twice ({folder}/stage.py and another stage.py)")
            found[stage.name] = stage
    return found


@cache
def rule_stages() -> dict[str, Stage]:
    """Every declared stage by the name its rules size it by (`sized("<rule>")` in the workflow)."""
    return {stage.rule: stage for stage in stages().values()}


def gpu_rules() -> frozenset[str]:
    """The rules whose jobs ask for a GPU (where the config does not run on the CPU)."""
    return frozenset(rule for rule, stage in rule_stages().items() if stage.gpu)


def json_argument(text: str) -> Any:
    """An argparse type: the workflow passes each rule's settings as JSON, unchanged."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text[:80]}") from err


def set_threads(threads: int) -> None:
    """torch's CPU threads in this process; 0 leaves torch's default."""
    import torch

    if threads:
        torch.set_num_threads(threads)
