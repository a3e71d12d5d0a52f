"""Image classifiers on top of a VLM: one module for every method, so the explainers see one interface.

ZS and FLCP classify with the class-prompt text embeddings (scaled by the learned temperature), which makes
the logits exactly CLIP's image-text logits; LP and FT use a trained linear head; CLIP-Adapter puts a trained
residual adapter between the frozen image embedding and the frozen prompt head; CoOp's head is the frozen text
tower's embeddings of its learned context followed by each class name. By default both read
L2-normalised image embeddings (a cosine head), so a linear head can start from the prompt weights; the
official code's LP/FT head is a plain `nn.Linear` on the unnormalised embeddings (`head: linear`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vlm_rationality.models.base import VisionLanguageModel

HeadKind = Literal["prompt", "linear"]
# What a head reads: `cosine`, the L2-normalised embedding; `linear`, the embedding as the encoder returns it.
HEAD_INPUTS = ("cosine", "linear")


class ClipAdapter(nn.Module):
    """CLIP-Adapter (Gao et al.): a bottleneck MLP (ReLU after each layer, no biases) on the image embedding, mixed
    with it by the residual ratio α: α·A(f) + (1 − α)·f, so α = 0 is the frozen model."""

    def __init__(self, dim: int, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__()
        self.reduction, self.ratio = reduction, ratio
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False), nn.ReLU()
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.mlp(embeddings) + (1 - self.ratio) * embeddings


class PromptContext(nn.Module):
    """CoOp's learned context (Zhou et al.): `length` token embeddings before each class text, shared by all
    classes ([length, W]) or one per class ([C, length, W])."""

    def __init__(self, context: torch.Tensor, texts: Sequence[str]) -> None:
        super().__init__()
        self.context = nn.Parameter(context)
        self.texts = list(texts)  # what follows the context: the class name (and the template's end, if any)

    @property
    def class_specific(self) -> bool:
        return self.context.dim() == 3

    def text_features(self, model: VisionLanguageModel) -> torch.Tensor:
        """[C, D]: the text tower's embedding of each class prompt "<context> <text>"."""
        embeddings, tokens = model.prompt_token_embeddings(self.texts, self.context.shape[-2])
        context = self.context.to(embeddings.dtype).expand(len(self.texts), *self.context.shape[-2:])
        embeddings = torch.cat([embeddings[:, :1], context, embeddings[:, 1 + context.shape[1] :]], dim=1)
        return model.encode_text_embeddings(embeddings, tokens)


class ImageClassifier(nn.Module):
    def __init__(
        self,
        model: VisionLanguageModel,
        head: nn.Linear,
        kind: HeadKind,
        head_input: str = "cosine",
        adapter: ClipAdapter | None = None,
        context: PromptContext | None = None,
    ) -> None:
        super().__init__()
        if head_input not in HEAD_INPUTS:
            raise KeyError(
                f"unknown head {head_input!r}; use 'cosine' (normalised embeddings) or 'linear' (unnormalised)"
            )
        self.model = model
        self.head = head
        self.kind = kind
        self.head_input = head_input
        self.adapter = adapter
        self.context = context  # CoOp: what `head` was computed from (kept for the checkpoint)

    def features(self, embeddings: torch.Tensor) -> torch.Tensor:
        """What the head reads of the image embeddings [B, D] (through the adapter, if there is one)."""
        if self.adapter is not None:
            embeddings = self.adapter(embeddings)
        return F.normalize(embeddings, dim=-1) if self.head_input == "cosine" else embeddings

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [B, 3, S, S] -> logits [B, C]."""
        return self.head(self.features(self.model.encode_image(images)))


# One prompt per class, or each class's prompts under several templates (a test-time ensemble).
Prompts = Sequence[str] | Sequence[Sequence[str]]


def prompt_features(model: VisionLanguageModel, prompts: Prompts) -> torch.Tensor:
    """The unit-norm text feature of each class [C, D]. A class given several prompts (one per template) gets the
    mean of their unit-norm embeddings, normalised again: CLIP's prompt ensemble, which averages in the joint space
    rather than the logits, so the classifier stays one linear head."""
    if all(isinstance(prompt, str) for prompt in prompts):
        return F.normalize(model.encode_text(list(prompts)).float(), dim=-1)
    counts = {len(prompt) for prompt in prompts}
    if len(counts) != 1 or any(isinstance(prompt, str) for prompt in prompts):
        raise ValueError("an ensemble gives every class the same number of prompts (one per template)")
    flat = [text for prompt in prompts for text in prompt]
    features = F.normalize(model.encode_text(flat).float(), dim=-1).view(len(prompts), counts.pop(), -1)
    return F.normalize(features.mean(dim=1), dim=-1)


@torch.no_grad()
def prompt_head(model: VisionLanguageModel, prompts: Prompts | PromptContext) -> nn.Linear:
    """Text features of the class prompts (or of a learned context), computed once: logits = scale * <img, text>."""
    if isinstance(prompts, PromptContext):
        features = F.normalize(prompts.text_features(model).float(), dim=-1)
    else:
        features = prompt_features(model, prompts)
    text = features * model.logit_scale.float()
    head = nn.Linear(text.shape[1], text.shape[0], bias=False, device=text.device)
    head.weight.copy_(text)
    return head.requires_grad_(False)


def build_classifier(
    model: VisionLanguageModel,
    kind: HeadKind,
    prompts: Prompts,
    init_from_prompts: bool = True,
    head_input: str = "cosine",
) -> ImageClassifier:
    """`prompt`: zero-shot head from the prompts; `linear`: trainable head.

    A linear head on normalised embeddings is a cosine classifier: its rows start at unit norm times the
    model's temperature (from the prompts, or random directions), as the prompt head does. A default
    nn.Linear init would give near-zero logits and starve the encoder of gradient. `head_input: linear` is the
    official code's head: nn.Linear's default init on the unnormalised embeddings (`init_from_prompts` unused).
    """
    if kind == "prompt":
        return ImageClassifier(model, prompt_head(model, prompts), kind)
    if kind != "linear":
        raise KeyError(f"unknown head kind {kind!r}; use 'prompt' or 'linear'")
    head = nn.Linear(model.embed_dim, len(prompts), device=model.device)
    if head_input == "linear":
        return ImageClassifier(model, head, kind, head_input)
    with torch.no_grad():
        if init_from_prompts:
            head.weight.copy_(prompt_head(model, prompts).weight)
        else:
            head.weight.copy_(F.normalize(torch.randn_like(head.weight), dim=-1) * model.logit_scale.float())
        head.bias.zero_()
    return ImageClassifier(model, head, kind)
