"""CoOp (Zhou et al., "Learning to prompt for vision-language models"): the prompt's words become learned vectors.

Only the context trains; both towers stay frozen, so the image embeddings are extracted once and each step runs
the text tower on the C class prompts "<context> <class name>". The context replaces the template's words before
`{name}` (the spec carries `prompt_template` to find the names); `init: template` starts it from those words'
embeddings, so training starts at the zero-shot classifier. The trained classifier is a prompt head, so the
explainers see what they see for ZS.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method, embed_split
from vlm_rationality.finetune.loop import fit
from vlm_rationality.models.base import VisionLanguageModel
from vlm_rationality.models.heads import ImageClassifier, PromptContext, prompt_head

INIT_STD = 0.02  # CoOp's random context: N(0, 0.02²)


def class_texts(prompts: Sequence[str], template: str) -> tuple[str, list[str]]:
    """The template's words before `{name}` and, per class, what follows them in its prompt (the name and the
    template's end): ("a photo of a", ["circle", ...]) for "a photo of a {name}"."""
    before, after = template.split("{name}", 1)
    texts = []
    for prompt in prompts:
        if not (prompt.startswith(before) and prompt.endswith(after)) or len(prompt) < len(before) + len(after):
            raise ValueError(f"class prompt {prompt!r} does not follow the template {template!r}")
        texts.append(prompt[len(before) :].strip())
    return before.strip(), texts


def initial_context(model: VisionLanguageModel, words: str, settings: dict, texts: Sequence[str]) -> torch.Tensor:
    length, init = settings.get("length"), settings["init"]
    if init == "template":
        if not words:
            raise ValueError("context init: template needs words before {name} in prompt_template")
        with torch.no_grad():
            context = model.word_embeddings(words).float().clone()
        if length is not None and length != len(context):
            raise ValueError(f"context init: template starts from the {len(context)} tokens of {words!r}, not {length}")
    else:
        width = model.prompt_token_embeddings(texts, length)[0].shape[-1]  # also: the context fits the text tower
        context = torch.randn(length, width, device=model.device) * INIT_STD
    return context.expand(len(texts), *context.shape).clone() if settings["class_specific"] else context


@FINETUNE_METHODS.register(
    "coop",
    trains=True,
    head="prompt",
    template=True,
    frozen_features=True,
    options={
        "context": {
            "type": "object",
            "description": (
                "`length` learned context vectors before each class name (16, CoOp's own), initialised at random "
                "(N(0, 0.02²)) or from the template's words before {name} (`init: template`, their length), shared "
                "by all classes or one per class (`class_specific`)"
            ),
            "additionalProperties": False,
            "default": {},
            "properties": {
                "length": {"type": "integer", "minimum": 1},
                "init": {"type": "string", "enum": ["random", "template"], "default": "random"},
                "class_specific": {"type": "boolean", "default": False},
            },
            "if": {"properties": {"init": {"const": "random"}}},
            "then": {"properties": {"length": {"default": 16}}},
        }
    },
)
class ContextOptimization(Method):
    """`context: {length, init: random|template, class_specific}`; logits = scale · <image, text(context, name)>."""

    def fit(self, model, prompts, split, device):
        torch.manual_seed(self.settings.seed)
        model.eval().requires_grad_(False)
        words, texts = class_texts(prompts, self.config["prompt_template"])
        context = PromptContext(initial_context(model, words, self.config["context"], texts), texts)
        embeddings = F.normalize(embed_split(model, split, device), dim=-1)
        labels = split.labels.to(device)

        def step(index):
            text = F.normalize(context.text_features(model), dim=-1)
            logits = model.logit_scale * embeddings[index.to(device)] @ text.T
            target = labels[index.to(device)]
            return F.cross_entropy(logits, target), int((logits.argmax(1) == target).sum())

        metrics = fit([context.context], step, split, self.settings)
        classifier = ImageClassifier(model, prompt_head(model, context), "prompt", context=context)
        return classifier.eval(), metrics
