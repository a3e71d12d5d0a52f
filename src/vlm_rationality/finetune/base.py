"""What a fine-tuning method is: a head kind and a training procedure on a training split."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
import torch

from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.finetune.augment import random_resized_crop_flip
from vlm_rationality.finetune.data import TrainingSplit, load_split
from vlm_rationality.finetune.distributed import gather, share
from vlm_rationality.finetune.loop import Selection, TrainSettings
from vlm_rationality.metrics.groups import cue_present, worst_group
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
        """With `early_stopping`, a score of the classifier on the held-out split after every epoch, best kept: its
        accuracy, or its worst (class, cue present) group's accuracy (`metric: worst_group`).

        The paper (RaVL, Appendix D.2) stops early without naming its metric. Accuracy needs only the labels, but on a
        held-out split as spurious as the training split it rewards the shortcut: the group-balanced methods' best
        epoch was their first. Worst-group accuracy is group robustness's convention (Sagawa et al., whose group DRO
        the paper's VL-GDRO is), read from the split's true cue (`validation_groups`: the dataset's tie, as the score
        table's worst group). The split's shards come as `validation` (the workflow's finetune rule adds both)."""
        stop = self.config.get("early_stopping")
        if not stop:
            return None
        if "validation" not in self.config:
            raise KeyError(
                f"early_stopping needs `validation`: the shards of split {stop['split']!r} "
                "(the finetune rule adds them)"
            )
        held_out = load_split(self.config["validation"])
        if stop.get("metric", "accuracy") == "accuracy":
            return Selection(lambda: float(correct(classifier, held_out, device).mean()), stop["patience"])
        present = held_out_cue(self.config["validation"], held_out, self.config["validation_groups"])
        labels = held_out.labels.numpy()
        _check_groups(labels, present, stop["split"])
        return Selection(
            lambda: worst_group(correct(classifier, held_out, device), labels, present)["acc_worst_group"],
            stop["patience"],
        )


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
def correct(classifier: ImageClassifier, split: TrainingSplit, device: torch.device) -> np.ndarray:
    """bool [N]: which of a split's samples the classifier gets right (in eval mode; its mode is restored)."""
    mode = classifier.model.training
    classifier.eval()
    hits = []
    for index in torch.arange(len(split)).split(256):
        logits = classifier(batch_images(classifier.model, split, index, device))
        hits.append((logits.argmax(1).cpu() == split.labels[index]).numpy())
    classifier.train(mode)
    return np.concatenate(hits)


MIN_GROUP = 10  # held-out samples per (class, cue present) group for a worst-group accuracy worth selecting on


def _check_groups(labels: np.ndarray, present: np.ndarray, split: str) -> None:
    """Refuse a held-out split whose smallest non-empty (class, cue) group is too small to score: a group of one
    image makes the worst group 0 or 1 at every epoch (seen: a split drawn at the training rho 0.98 scored 0.0 at
    all ten epochs, so the first was kept). An empty group is no group, as in the score table."""
    sizes = {
        (int(y), bool(cue)): int(((labels == y) & (present == cue)).sum()) for y in np.unique(labels) for cue in (0, 1)
    }
    small = {group: n for group, n in sizes.items() if 0 < n < MIN_GROUP}
    if small:
        (y, cue), n = min(small.items(), key=lambda item: item[1])
        raise ValueError(
            f"early_stopping.metric worst_group: split {split!r} has {len(small)} (class, cue present) groups under "
            f"{MIN_GROUP} samples (class {y}, cue {'present' if cue else 'absent'}: {n}); a worst group that small "
            "is 0 or 1 at every epoch. Hold out a split whose groups each have that many (synthetic: a lower rho or "
            "a larger size), or select on accuracy"
        )


def held_out_cue(paths: Sequence[str], split: TrainingSplit, tie: dict[str, Any]) -> np.ndarray:
    """bool [N]: whether each sample of the held-out split shows its cue (its class's own background, or the
    sticker), from its shards, as the score table reads it (metrics/score.py)."""
    found: dict[str, Any] = {}
    for path in paths:
        found.update(PreparedShard(path).backgrounds() if "tied" in tie else PreparedShard(path).cue_present())
    values = np.asarray([found[sample_id] for sample_id in split.sample_ids])
    return cue_present(split.labels.numpy(), values, tie["tied"]) if "tied" in tie else values.astype(bool)
