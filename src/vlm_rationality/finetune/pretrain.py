"""Contrastive pretraining of a (tiny) CLIP on image captions: the synthetic benchmark's base model."""

from __future__ import annotations

from typing import Any

import torch

from vlm_rationality.finetune.base import encode_batch
from vlm_rationality.finetune.data import TrainingSplit
from vlm_rationality.finetune.distributed import gather, share
from vlm_rationality.finetune.loop import TrainSettings, fit, text_vocabulary
from vlm_rationality.finetune.losses import contrastive_loss
from vlm_rationality.models.base import VisionLanguageModel


def pretrain_clip(
    model: VisionLanguageModel, split: TrainingSplit, config: dict[str, Any], device: torch.device
) -> dict[str, float]:
    """Train both towers on (image, caption) pairs; identical captions in a batch count as positives."""
    if split.captions is None:
        raise ValueError("pretraining needs captions")
    settings = TrainSettings.from_config(config)
    torch.manual_seed(settings.seed)
    caption_ids = {caption: i for i, caption in enumerate(sorted(set(split.captions)))}
    groups = torch.tensor([caption_ids[c] for c in split.captions], device=device)
    model.train().requires_grad_(True)

    def step(index):
        image = encode_batch(model, split, index, device)
        text = gather(model.encode_text([split.captions[i] for i in share(index).tolist()]), len(index))
        return contrastive_loss(image, text, model.logit_scale, groups[index.to(device)]), None

    with text_vocabulary(model, split.captions, settings) as untouched:
        metrics = fit(list(model.parameters()), step, split, settings, what="pretrain", untouched=untouched)
    model.eval().requires_grad_(False)
    return metrics
