"""CLIP-Adapter: a residual bottleneck adapter on frozen image embeddings, classified by the frozen prompts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, embed_split
from vlm_rationality.finetune.loop import fit
from vlm_rationality.models.heads import ClipAdapter, build_classifier


@FINETUNE_METHODS.register(
    "clip_adapter",
    trains=True,
    head="prompt",
    frozen_features=True,
    options={
        "adapter": {
            "type": "object",
            "description": "the bottleneck's reduction (dim / reduction hidden units) and the residual ratio α",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "reduction": {"type": "integer", "minimum": 1, "default": 4},
                "ratio": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.2},
            },
        }
    },
)
class ClipAdapterTuning(Method):
    """Only the adapter trains (`adapter: {reduction, ratio}`); the backbone and the class-prompt head stay
    frozen, so the embeddings are extracted once. The explainers see the adapter in the classifier's forward,
    and their gradients flow through it to the image tower."""

    def fit(self, model, prompts, split, device):
        torch.manual_seed(self.settings.seed)
        model.eval().requires_grad_(False)
        classifier = build_classifier(model, "prompt", prompts)
        classifier.adapter = ClipAdapter(model.embed_dim, **self.config["adapter"]).to(device)
        embeddings = embed_split(model, split, device)
        labels = split.labels.to(device)

        def step(index):
            logits = classifier.head(classifier.features(embeddings[index.to(device)]))
            target = labels[index.to(device)]
            return F.cross_entropy(logits, target), int((logits.argmax(1) == target).sum())

        metrics = fit(list(classifier.adapter.parameters()), step, split, self.settings)
        return classifier.eval(), metrics
