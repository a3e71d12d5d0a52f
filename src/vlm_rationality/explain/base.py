"""The explain contract: what a heatmap method is, what it returns, and the registry that names them.

A heatmap method explains a batch: one forward of the classifier on the device and at most one backward, since
samples in a batch are independent (one backward of Σᵢ logitᵢ[targetᵢ] gives every sample's gradient at once).
It returns the logits, a non-negative patch-grid relevance map per sample, and the class it explained. A new
method is one file that subclasses `HeatmapMethod`, implements `relevance`, and registers itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from vlm_rationality.device import autocast
from vlm_rationality.models.base import VisionLanguageModel
from vlm_rationality.models.heads import ImageClassifier
from vlm_rationality.registry import Registry

Target = Literal["label", "pred"]
TARGETS: tuple[str, ...] = ("label", "pred")


@dataclass
class Explanation:
    logits: torch.Tensor  # float32 [B, C], detached
    relevance: torch.Tensor  # float32 [B, gh, gw], the patch-grid heatmap
    explained_class: torch.Tensor  # int64 [B]


def explained_classes(logits: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    """The class each sample's map explains: its ground-truth label (the paper) or the prediction."""
    if target == "label":
        return labels
    if target == "pred":
        return logits.argmax(dim=1)
    raise KeyError(f"unknown heatmap target {target!r}; use 'label' (ground truth) or 'pred'")


def check_start_block(start_block: int, blocks: int) -> int:
    """The first block's index from 0; a negative `start_block` counts from the last block (-1: the last block only,
    the official code's `start_layer=-1` for ZS and FLCP)."""
    if not -blocks <= start_block < blocks:
        raise ValueError(f"heatmap start_block {start_block} is outside the model's {blocks} vision blocks")
    return start_block % blocks


def cls_row_rollout(maps: list[torch.Tensor], residual: bool) -> torch.Tensor:
    """CLS row of the product M_L … M_s over per-block [B, N, N] maps (first to last), as [B, N].

    `residual`: M_l = I + maps_l (Chefer); otherwise M_l = maps_l (maps that already hold the identity).
    """
    batch, tokens = maps[0].shape[0], maps[0].shape[-1]
    row = torch.zeros(batch, 1, tokens, device=maps[0].device, dtype=torch.float32)
    row[:, 0, 0] = 1.0
    for block in reversed(maps):
        step = torch.bmm(row, block)
        row = row + step if residual else step
    return row[:, 0]


class HeatmapMethod(ABC):
    """A batched explainer; subclasses say what they record in the forward and how it becomes relevance."""

    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        target: Target = "label",
        start_block: int = 0,
        amp_dtype: torch.dtype | None = None,
        compiled: bool = False,
    ) -> None:
        if target not in TARGETS:
            raise KeyError(f"unknown heatmap target {target!r}; use 'label' (ground truth) or 'pred'")
        self.target = target
        self.start_block = start_block
        self.amp_dtype = amp_dtype
        self.compiled = compiled  # the recorded attention through torch.compile (the methods that read attention)

    @abstractmethod
    def record(self, model: VisionLanguageModel) -> AbstractContextManager[list[torch.Tensor]]:
        """Within the context, the forward appends what `relevance` needs (attention maps, token features)."""

    @abstractmethod
    def relevance(
        self, model: VisionLanguageModel, selected: torch.Tensor, recorded: list[torch.Tensor]
    ) -> torch.Tensor:
        """Patch-grid relevance [B, gh, gw] from the recorded tensors; `selected` = Σᵢ logitᵢ[explainedᵢ], the one
        scalar a gradient method differentiates (at most one backward)."""

    def __call__(self, classifier: ImageClassifier, images: torch.Tensor, labels: torch.Tensor) -> Explanation:
        """Explain preprocessed `images` [B, 3, S, S]; works inside an outer `torch.no_grad()` too."""
        model = classifier.model
        check_start_block(self.start_block, len(model.vision_blocks()))
        # The input carries the graph, so frozen weights still give the recorded tensors a grad_fn.
        images = images.detach().requires_grad_(self.uses_gradients)
        with (
            torch.set_grad_enabled(self.uses_gradients),
            autocast(images.device, self.amp_dtype),
            self.record(model) as recorded,
        ):
            logits = classifier(images).float()
        with torch.set_grad_enabled(self.uses_gradients):
            explained = explained_classes(logits, labels, self.target)
            selected = logits.gather(1, explained[:, None]).sum()
            relevance = self.relevance(model, selected, recorded)
        return Explanation(
            logits.detach(), relevance.detach().float().reshape(len(images), *model.grid_size), explained
        )


HEATMAP_METHODS: Registry[type[HeatmapMethod]] = Registry(
    "heatmap method", ("vlm_rationality.explain", "HEATMAP_METHODS")
)
