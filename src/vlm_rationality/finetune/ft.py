"""Full fine-tuning: image encoder and linear head with cross-entropy (text tower frozen)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, batch_images
from vlm_rationality.finetune.distributed import gather, share
from vlm_rationality.finetune.loop import fit
from vlm_rationality.models.heads import build_classifier


@FINETUNE_METHODS.register("ft", trains=True, head="linear", selects=True)
class FullFineTune(Method):
    """Image encoder and linear head trained with cross-entropy; the text tower stays frozen."""

    def sample_weights(self, split) -> torch.Tensor | None:
        """How often each training sample is drawn (None: each once an epoch, shuffled)."""
        return None

    def fit(self, model, prompts, split, device):
        weights = self.sample_weights(split)
        torch.manual_seed(self.settings.seed)
        classifier = build_classifier(
            model, "linear", prompts, self.config.get("head_init") == "prompts", self.config.get("head", "cosine")
        )
        model.requires_grad_(False)
        trained = model.image_parameters() + list(classifier.head.parameters())
        for parameter in trained:
            parameter.requires_grad_(True)
        labels = split.labels.to(device)
        classifier.train()

        def step(index):
            local = classifier(batch_images(model, split, share(index), device, self.augment))
            logits = gather(local, len(index))
            target = labels[index.to(device)]
            return F.cross_entropy(logits, target), int((logits.argmax(1) == target).sum())

        metrics = fit(trained, step, split, self.settings, weights=weights, select=self.selection(classifier, device))
        return classifier.eval(), metrics
