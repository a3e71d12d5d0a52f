"""Linear probing: a linear head on frozen image embeddings (extracted once), L2-normalised unless `head: linear`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, embed_split
from vlm_rationality.finetune.loop import fit
from vlm_rationality.models.heads import build_classifier


@FINETUNE_METHODS.register("lp", trains=True, head="linear", frozen_features=True)
class LinearProbe(Method):
    """A linear head on frozen image features; the encoder is unchanged."""

    def fit(self, model, prompts, split, device):
        torch.manual_seed(self.settings.seed)
        model.eval().requires_grad_(False)
        classifier = build_classifier(
            model, "linear", prompts, self.config.get("head_init") == "prompts", self.config.get("head", "cosine")
        )
        with torch.no_grad():
            features = classifier.features(embed_split(model, split, device))
        labels = split.labels.to(device)

        def step(index):
            logits = classifier.head(features[index.to(device)])
            target = labels[index.to(device)]
            return F.cross_entropy(logits, target), int((logits.argmax(1) == target).sum())

        metrics = fit(list(classifier.head.parameters()), step, split, self.settings)
        return classifier.eval(), metrics
