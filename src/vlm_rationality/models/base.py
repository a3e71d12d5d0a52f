"""The one protocol every vision-language model adapter implements.

Stages only see this interface: image/text encoders, the learned temperature, the preprocessing spec and
the attention blocks whose probabilities the explainers read. Nothing model-specific leaks past it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from vlm_rationality.models.adapter import model_adapter


def refused_pickle(path: Any, err: Exception, key: str = "the model's `pretrained`") -> ValueError:
    """torch's weights_only refusal, said without its advice (weights_only=False runs the pickle's code)."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    return ValueError(
        f"checkpoint {path} is refused: it is a pickle that holds Python objects besides tensors"
        f"{f' ({found.group(1)})' if found else ''}, and loading those could run arbitrary code. Save its state "
        "dict alone (torch.save(model.state_dict(), path), or safetensors) where you trust the file, and set "
        f"{key} to that"
    )


@dataclass(frozen=True)
class Preprocess:
    """Input size and normalisation; images arrive as uint8 [B, H, W, 3] already at `image_size`."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if images.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"images are {tuple(images.shape[1:3])}, the model expects {self.image_size}x{self.image_size}; "
                "prepare the dataset at the model's input size"
            )
        x = images.permute(0, 3, 1, 2).to(dtype) / 255.0
        mean = torch.tensor(self.mean, device=x.device, dtype=dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=dtype).view(1, 3, 1, 1)
        return (x - mean) / std


class VisionLanguageModel(nn.Module, ABC):
    """A dual-encoder VLM as the benchmark sees it."""

    preprocess: Preprocess

    @abstractmethod
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [B, 3, S, S] -> unnormalised embeddings [B, D]."""

    @abstractmethod
    def encode_image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode_image` and, from the same forward pass, every patch token through the same final norm and
        projection, [B, gh, gw, D]: features of image regions that are part of the image's own computation (RaVL's
        RoIAlign on a CNN's feature map, read on a ViT's patch grid)."""

    @abstractmethod
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompts -> unnormalised embeddings [T, D] (on the model's device)."""

    @abstractmethod
    def prompt_token_embeddings(self, texts: Sequence[str], slots: int) -> tuple[torch.Tensor, Any]:
        """Prompt learning (CoOp): each text's input token embeddings [T, L, W] with `slots` zero rows right after
        the start token for the caller to fill, and what `encode_text_embeddings` needs besides (ids, masks).
        Fails naming the text tower's context length when the slots and the longest text do not fit."""

    @abstractmethod
    def encode_text_embeddings(self, embeddings: torch.Tensor, tokens: Any) -> torch.Tensor:
        """`encode_text` from input token embeddings (as `prompt_token_embeddings` returns them) -> [T, D]."""

    @abstractmethod
    def word_embeddings(self, text: str) -> torch.Tensor:
        """The input embeddings [n, W] of `text`'s tokens, no start or end token: a context initialised from words."""

    @property
    @abstractmethod
    def logit_scale(self) -> torch.Tensor:
        """The learned temperature, already exponentiated (CLIP's 100 after training)."""

    @property
    @abstractmethod
    def grid_size(self) -> tuple[int, int]:
        """Patch grid of the vision tower; heatmaps are stored at this resolution."""

    @abstractmethod
    def vision_blocks(self) -> list[nn.Module]:
        """The vision transformer blocks, first to last."""

    @abstractmethod
    def vision_block_norms(self) -> list[nn.Module]:
        """Each vision block's first LayerNorm, first to last: its output is the tokens [B, N, D] (token 0 = CLS)
        the block's attention reads, where Grad-CAM reads a ViT."""

    @abstractmethod
    def capture_attention(self, compiled: bool = False) -> AbstractContextManager[list[torch.Tensor]]:
        """Within the context, each forward appends every vision block's attention probabilities
        [B, heads, N, N] (token 0 = CLS) to the yielded list, kept in the autograd graph; `compiled`: the attention
        runs through torch.compile."""

    def training_vocabulary(self, texts: Sequence[str]) -> AbstractContextManager[list[torch.Tensor]]:
        """Within the context the text tower's token table holds only the rows of `texts`' tokens (encoding any
        other text fails), so training does not carry the whole vocabulary's gradient and optimizer state; on
        leaving, the trained rows go back into the full table. Yields the rows left out, for `loop.fit` to give
        them the weight decay they would have had. This default keeps the whole table (and yields nothing)."""
        return nullcontext([])

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Width of the joint image-text embedding."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @abstractmethod
    def image_parameters(self) -> list[nn.Parameter]:
        """Parameters of the image tower (what FT updates)."""

    @abstractmethod
    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in the layout of the model's own library, so a saved file reloads through `pretrained`."""

    @abstractmethod
    def load_backbone_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `backbone_state_dict`; strict, so a mismatched checkpoint fails naming its keys."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The config that rebuilds this model (goes into checkpoint sidecars)."""


def build_model(config: dict[str, Any]) -> VisionLanguageModel:
    """Build a model from its config entry, e.g. {adapter: open_clip, arch: ViT-B-16, pretrained: openai}.

    Initialisation draws from a private generator with a fixed seed: a model without pretrained weights is the
    same random model in every job (fine-tuning and explaining it must agree), whatever the global RNG holds.
    """
    adapter = model_adapter(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = adapter.build()
    normalization = config.get("normalization")
    if normalization is not None:  # e.g. ImageNet's mean/std, as the official code feeds CLIP
        model.preprocess = Preprocess(
            model.preprocess.image_size, tuple(normalization["mean"]), tuple(normalization["std"])
        )
    return model
