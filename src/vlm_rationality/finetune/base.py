"""What a fine-tuning method is: a head kind and a training procedure on a training split."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

from vlm_rationality.finetune.augment import random_resized_crop_flip
from vlm_rationality.finetune.data import TrainingSplit, load_split
from vlm_rationality.finetune.distributed import gather, share
from vlm_rationality.finetune.loop import Selection, TrainSettings
from vlm_rationality.models.base import VisionLanguageModel
from vlm_rationality.models.heads import HeadKind, ImageClassifier
from vlm_rationality.registry import Registry

FINETUNE_METHODS: Registry[type["Method"]] = Registry(
    "fine-tuning method", ("vlm_rationality.finetune", "FINETUNE_METHODS")
)


class Method(ABC):
    # Stated at registration (`register("ft", trains=True, head="linear")`), so the config check reads them as data.
    # `frozen_features=True`: the method trains on image embeddings extracted once (`embed_split`), so nothing can
    # be augmented per step.
    # `loads=True`: the classifier is loaded from files (`files=[...]`, options that name them), not trained: it has a
    # checkpoint like a trained method, no training settings, and reads no training split.
    # `selects=True`: the method takes `early_stopping` (model selection on a held-out split, `Method.selection`).
    head: HeadKind
    trains: bool
    frozen_features: bool = False
    loads: bool = False
    files: Sequence[str] = ()

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.settings = TrainSettings.from_config(config) if self.trains else None  # checked when built
        self.augment = bool(config.get("augment", False))  # random resized crop + flip in every step
        if self.augment and self.frozen_features:
            raise ValueError(
                f"{config['kind']} trains on image embeddings extracted once; augment: true does not apply to it"
            )

    @abstractmethod
    def fit(
        self, model: VisionLanguageModel, prompts: Sequence[str], split: TrainingSplit, device: torch.device
    ) -> tuple[ImageClassifier, dict[str, float]]:
        """Fine-tune `model` (in place) and return its classifier with the final training metrics."""

    def selection(self, classifier: ImageClassifier, device: torch.device) -> Selection | None:
        """With `early_stopping`, the classifier's accuracy on the held-out split after every epoch, best kept.

        Accuracy, because the paper (RaVL, Appendix D.2) stops early without naming its metric, and a method that is
        given no group labels (RaVL's premise: Stage 1 finds them) can only select on what every label says; the
        split's shards come as `validation` (the workflow's finetune rule adds them)."""
        stop = self.config.get("early_stopping")
        if not stop:
            return None
        if "validation" not in self.config:
            raise KeyError(
                f"early_stopping needs `validation`: the shards of split {stop['split']!r} "
                "(the finetune rule adds them)"
            )
        held_out = load_split(self.config["validation"])
        return Selection(lambda: accuracy(classifier, held_out, device), stop["patience"])


def build_method(config: dict[str, Any]) -> Method:
    return FINETUNE_METHODS.get(config["kind"])(config)


def batch_images(
    model: VisionLanguageModel, split: TrainingSplit, index: torch.Tensor, device: torch.device, augment: bool = False
) -> torch.Tensor:
    images = model.preprocess(split.images[index].to(device, non_blocking=True))
    return random_resized_crop_flip(images) if augment else images


def encode_batch(
    model: VisionLanguageModel, split: TrainingSplit, index: torch.Tensor, device: torch.device, augment: bool = False
) -> torch.Tensor:
    """Image embeddings of a global batch: this rank encodes its share, the ranks' outputs are gathered."""
    return gather(model.encode_image(batch_images(model, split, share(index), device, augment)), len(index))


@torch.no_grad()
def embed_split(model: VisionLanguageModel, split: TrainingSplit, device: torch.device) -> torch.Tensor:
    """Every image embedding of the split [N, D], in chunks of 256; each rank encodes its share of a chunk and all
    ranks then hold every embedding (the frozen-feature methods extract them once)."""
    return torch.cat([encode_batch(model, split, index, device) for index in torch.arange(len(split)).split(256)])


@torch.no_grad()
def accuracy(classifier: ImageClassifier, split: TrainingSplit, device: torch.device) -> float:
    """The classifier's accuracy on a split (in eval mode; the mode it was in is restored)."""
    mode = classifier.model.training
    classifier.eval()
    correct = 0
    for index in torch.arange(len(split)).split(256):
        logits = classifier(batch_images(classifier.model, split, index, device))
        correct += int((logits.argmax(1).cpu() == split.labels[index]).sum())
    classifier.train(mode)
    return correct / len(split)
