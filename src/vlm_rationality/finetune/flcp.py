"""Finetune like CLIP pretrains (Goyal et al., "Finetune like you pretrain"): the contrastive image/class-
prompt loss updates both towers; classification then uses the fine-tuned prompt embeddings."""

from __future__ import annotations

import torch

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, encode_batch
from vlm_rationality.finetune.loop import fit, text_vocabulary
from vlm_rationality.finetune.losses import contrastive_loss
from vlm_rationality.models.heads import build_classifier


@FINETUNE_METHODS.register("flcp", trains=True, head="prompt")
class FinetuneLikeCLIPPretrain(Method):
    """Contrastive image-text fine-tuning on class captions; it classifies with its prompts afterwards."""

    def fit(self, model, prompts, split, device):
        torch.manual_seed(self.settings.seed)
        model.train().requires_grad_(True)
        labels = split.labels.to(device)

        def step(index):
            target = labels[index.to(device)]
            image = encode_batch(model, split, index, device, self.augment)
            text = model.encode_text(prompts)  # all class prompts, re-encoded as the text tower learns
            loss = contrastive_loss(image, text[target], model.logit_scale, target)
            correct = int(((image @ text.T).argmax(1) == target).sum())
            return loss, correct

        with text_vocabulary(model, prompts, self.settings) as untouched:
            metrics = fit(list(model.parameters()), step, split, self.settings, untouched=untouched)
        model.eval().requires_grad_(False)
        return build_classifier(model, "prompt", prompts), metrics
