"""Zero-shot: no training; classify with the class-prompt text embeddings.

`templates` makes the prompts a test-time ensemble (CLIP's): each class's text feature is the mean of its unit-norm
embeddings under every template, normalised again (models/heads.py). A list of templates, each with one plain
`{name}`, or a named set that open_clip ships (its ImageNet templates); the workflow fills them in (plan/specs.py).
"""

from __future__ import annotations

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method
from vlm_rationality.models.heads import build_classifier


@FINETUNE_METHODS.register(
    "zs",
    trains=False,
    head="prompt",
    options={
        "templates": {
            "description": (
                "a test-time prompt ensemble in place of prompt_template: a list of templates, each with one {name}, "
                "or a set open_clip ships: openai-imagenet (CLIP's 80), simple-imagenet (its 7)"
            ),
            "oneOf": [
                {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
                {"type": "string", "enum": ["openai-imagenet", "simple-imagenet"]},
            ],
        }
    },
)
class ZeroShot(Method):
    """The base model's prompt head as it is: nothing trains."""

    def fit(self, model, prompts, split, device):
        return build_classifier(model, "prompt", prompts), {}
