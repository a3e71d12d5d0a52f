"""What a job that classifies is given: a model, its class prompts, and a fine-tuned checkpoint or none (the model's
own weights classify with the prompts: zero-shot).

One spec for the stages that load a classifier (explain, predict, twins, discover, assign-regions): the same
command-line options, the same identity in their settings hash, the same loading. Light to import: the model stack
comes in only when `load` runs.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_rationality.io import read_json

if TYPE_CHECKING:
    from vlm_rationality.models.heads import ImageClassifier


def sidecar_path(path: str | os.PathLike) -> Path:
    """A checkpoint's sidecar (how it was made), beside it."""
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    return read_json(sidecar_path(path), f"delete {path} and rerun the stage that writes it")


@dataclass(frozen=True)
class ClassifierSpec:
    model: dict[str, Any]
    prompts: list[str] | list[list[str]]  # one per class, or each class's under every template (heads.Prompts)
    checkpoint: str | None = None

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, json_type: Any) -> None:
        group = parser.add_argument_group("classifier")
        group.add_argument("--model", type=json_type, required=True, help="model config (JSON)")
        group.add_argument(
            "--prompts", type=json_type, required=True, help="class prompts (JSON list; a list per class: an ensemble)"
        )
        group.add_argument(
            "--checkpoint",
            default=None,
            help="a fine-tuned classifier (safetensors, its sidecar beside it); without it the model's own weights "
            "classify with the prompts (zero-shot)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ClassifierSpec:
        return cls(args.model, args.prompts, args.checkpoint)

    def identity(self) -> list[Any]:
        """What a file made with this classifier depends on, for its settings hash: the model, the prompts and the
        fine-tuning that made the checkpoint (its sidecar's method; none for the model's own weights)."""
        return [self.model, self.prompts, read_sidecar(self.checkpoint)["method"] if self.checkpoint else None]

    def load(self, device: Any = "cpu") -> ImageClassifier:
        """The classifier on `device`, in eval mode."""
        from vlm_rationality.models.checkpoint import method_classifier

        return method_classifier(self.model, self.prompts, self.checkpoint).to(device).eval()
