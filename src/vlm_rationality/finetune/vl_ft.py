"""Standard VLM fine-tuning, RaVL's first baseline (Appendix D.2): the image tower learns the CLIP objective against
the frozen class-prompt texts, and classifies with them afterwards, as zero-shot does.

It is RaVL's Stage 2 without its region terms (`ravl` at region_loss.weight 1 trains the same weights), and the base
of the paper's other baselines on this objective (vl_upsample.py, vl_erm.py, vl_gdro.py): each adds a sampler or a
classification term λ·L_CL + (1 − λ)·L on the zero-shot logits, so all of them differ from RaVL in one choice only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, encode_batch
from vlm_rationality.finetune.loop import fit
from vlm_rationality.finetune.losses import contrastive_loss
from vlm_rationality.models.heads import build_classifier


@FINETUNE_METHODS.register("vl-ft", trains=True, head="prompt", selects=True)
class ContrastiveFineTune(Method):
    """The CLIP objective (L_CL) on (image, class prompt) pairs; text tower frozen."""

    def sample_weights(self, split) -> torch.Tensor | None:
        """How often each training sample is drawn (None: each once an epoch, shuffled)."""
        return None

    def prepare(self, split, classes: int) -> None:
        """Read what the classification term needs of the training split (its groups), before training."""

    def classification_loss(self, logits: torch.Tensor, index: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The term added to L_CL on the zero-shot logits [B, C] of the batch `index` (none here)."""
        raise NotImplementedError

    def fit(self, model, prompts, split, device):
        weights = self.sample_weights(split)
        self.prepare(split, len(prompts))
        weight = self.config.get("weight", 1.0)  # λ of λ·L_CL + (1 − λ)·classification_loss
        torch.manual_seed(self.settings.seed)
        model.requires_grad_(False)
        with torch.no_grad():
            text = F.normalize(model.encode_text(prompts).float(), dim=-1)
        classifier = build_classifier(model, "prompt", prompts)
        trained = model.image_parameters()
        for parameter in trained:
            parameter.requires_grad_(True)
        model.train()
        labels = split.labels.to(device)

        def step(index):
            target = labels[index.to(device)]
            image = encode_batch(model, split, index, device, self.augment)
            loss = contrastive_loss(image, text[target], model.logit_scale, target)
            logits = model.logit_scale * F.normalize(image, dim=-1) @ text.T
            if weight < 1:
                loss = weight * loss + (1 - weight) * self.classification_loss(logits, index, target)
            return loss, int((logits.argmax(1) == target).sum())

        metrics = fit(trained, step, split, self.settings, weights=weights, select=self.selection(classifier, device))
        model.eval().requires_grad_(False)
        return classifier.eval(), metrics
