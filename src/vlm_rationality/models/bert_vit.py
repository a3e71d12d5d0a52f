"""ITC dual encoders on maintained libraries: a timm ViT image tower and a transformers BERT text tower.

ALBEF and BLIP classify through their image-text contrastive (ITC) head: the ViT's CLS token through
`vision_proj`, the text-only BERT's CLS token through `text_proj`, cosine similarity divided by the learned
temperature `temp`. This module builds exactly that path and reads the official checkpoint files
(`ALBEF.pth`, BLIP's `model_base.pth`) by their state-dict keys; LAVIS is not needed (it pins timm and
transformers versions that cannot live beside open_clip 3). Each model's adapter states its key layout
(`albef.py`, `blip.py`); architectures are JSON files in `configs/<family>/` (`bert_vit_adapter.py`).

The adapter's parameters are named as in the official files (`visual_encoder.*`, `text_encoder.*`,
`vision_proj`, `text_proj`, `temp`), so `backbone_state_dict` writes the official layout and a fine-tuned file
reloads through `pretrained` like the original checkpoint does.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections import Counter
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Mapping, Sequence

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vlm_rationality.models.attention import capture_attention
from vlm_rationality.models.base import Preprocess, VisionLanguageModel, refused_pickle
from vlm_rationality.models.bert_vit_adapter import BertViTAdapter, TextConfig, check_vocabulary

log = logging.getLogger(__name__)
POS_EMBED = "visual_encoder.pos_embed"


def load_tokenizer(source: str, expected_size: int) -> Any:
    """bert-base-uncased WordPiece from a local directory or the HF cache; never downloaded (checked as data first,
    since transformers 5 returns a 5-token tokenizer without complaint when the vocabulary file is missing)."""
    from transformers import BertTokenizer

    check_vocabulary(source, expected_size)
    return BertTokenizer.from_pretrained(source, local_files_only=True)


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An official `.pth` ({'model': state_dict, ...}) or a safetensors file in the same key layout."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as err:  # a truncated or damaged file: safetensors' message does not name it
            raise ValueError(f"checkpoint {path} is not a readable safetensors file ({err}); restore it") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # a pickle needing arbitrary classes: torch's advice would run its code
        raise refused_pickle(path, err) from None
    except Exception as err:  # not a torch file at all
        raise ValueError(f"checkpoint {path} is not a plain torch state dict ({err})") from err
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"checkpoint {path} holds no state dict (expected {{'model': {{name: tensor}}}} or {{name: tensor}})"
        )
    return state


def summarise_keys(keys: Sequence[str]) -> str:
    """'text_encoder.bert.encoder.layer.{6..11} ×96, itm_head ×2, …': key groups with layer ranges, for logs."""
    groups: dict[str, list[int]] = {}
    counts: Counter[str] = Counter()
    for key in keys:
        match = re.match(r"(.*?)\.(\d+)\.", key)
        group = match.group(1) if match else key.split(".")[0]
        counts[group] += 1
        if match:
            groups.setdefault(group, []).append(int(match.group(2)))
    parts = []
    for group, count in sorted(counts.items()):
        index = groups.get(group)
        label = f"{group}.{{{min(index)}..{max(index)}}}" if index else group
        parts.append(f"{label} ×{count}")
    return ", ".join(parts)


class _NoTokenTypes(nn.Module):
    """Stands in for the token-type embedding of a BERT that has none (BLIP): adds nothing."""

    def forward(self, token_type_ids: torch.Tensor) -> torch.Tensor:
        return token_type_ids.new_zeros((), dtype=torch.float32)  # 0-d: broadcasts, keeps the embedding dtype


class BertViT(VisionLanguageModel):
    """The ITC path of a ViT + BERT model, built from its adapter (which states the official checkpoint's layout)."""

    def __init__(self, adapter: BertViTAdapter) -> None:
        super().__init__()
        self.family = adapter.family
        self.text_prefix = adapter.text_prefix
        self.token_types = adapter.token_types
        self.arch_name = adapter.arch
        self.arch = arch = adapter.resolve()
        self.tokenizer_source = adapter.tokenizer
        self.pretrained = adapter.pretrained
        self.image_size = adapter.image_size or arch.image_size
        self.tokenizer = load_tokenizer(adapter.tokenizer, arch.tokenizer_vocab_size)
        v, t = arch.vision, arch.text
        self.visual_encoder = VisionTransformer(
            img_size=self.image_size,
            patch_size=v.patch_size,
            embed_dim=v.width,
            depth=v.layers,
            num_heads=v.heads,
            mlp_ratio=v.mlp_ratio,
            qkv_bias=True,
            num_classes=0,
            global_pool="token",
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )
        self.text_encoder = _bert(t, self.token_types)
        self.vision_proj = nn.Linear(v.width, arch.embed_dim)
        self.text_proj = nn.Linear(t.width, arch.embed_dim)
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.preprocess = Preprocess(self.image_size, arch.mean, arch.std)
        self.eval()

    @classmethod
    def load(cls, adapter: BertViTAdapter) -> "BertViT":
        """The model with the adapter's official checkpoint loaded, if it names one."""
        model = cls(adapter)
        if adapter.pretrained is not None:
            source = adapter.pretrained
            unused = model.load_checkpoint(read_checkpoint(source), source=source, allow_unused=True)
            if unused:
                log.info(
                    "%s: %d tensors of %s are not on the ITC path: %s",
                    adapter.family,
                    len(unused),
                    source,
                    summarise_keys(unused),
                )
        return model

    def _official(self, key: str) -> str:
        return self.text_prefix + key[len("text_encoder.") :] if key.startswith("text_encoder.") else key

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        return {self._official(key): value for key, value in self.state_dict().items()}

    def load_backbone_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.load_checkpoint(state, source="state dict", allow_unused=False)

    def load_checkpoint(self, state: Mapping[str, torch.Tensor], source: str, allow_unused: bool) -> list[str]:
        """Load the ITC path from official keys; returns the keys left unused.

        Fails naming the keys on anything missing or of another shape; the one adaptation is the position
        embedding, resampled (bicubic, as ALBEF and BLIP do when fine-tuning) to another input size.
        """
        own = self.state_dict()
        official = {self._official(key): key for key in own}
        missing = [key for key in official if key not in state]
        if missing:
            raise ValueError(
                f"{source}: {len(missing)} tensors of the {self.family} ITC path are missing "
                f"({summarise_keys(missing)}), e.g. {', '.join(missing[:5])}; is it a {self.family} checkpoint?"
            )
        loaded, mismatched = {}, []
        for key, name in official.items():
            tensor = state[key]
            if key == POS_EMBED and tensor.shape != own[name].shape and tensor.dim() == 3:
                tensor = self._resample_pos_embed(tensor, source)
            if tensor.shape != own[name].shape:
                mismatched.append(
                    f"{key} {tuple(tensor.shape)} in the file, {tuple(own[name].shape)} in {self.arch_name}"
                )
            loaded[name] = tensor
        if mismatched:
            raise ValueError(f"{source}: shapes differ from architecture {self.arch_name}: {'; '.join(mismatched)}")
        unused = sorted(set(state) - set(official))
        if unused and not allow_unused:
            raise ValueError(
                f"{source}: unexpected tensors {summarise_keys(unused)} for {self.family} {self.arch_name}"
            )
        self.load_state_dict(loaded, strict=True)
        return unused

    def _resample_pos_embed(self, pos_embed: torch.Tensor, source: str) -> torch.Tensor:
        old = round((pos_embed.shape[1] - 1) ** 0.5)
        if old * old + 1 != pos_embed.shape[1]:
            return pos_embed  # not a square grid: reported as a shape mismatch
        grid = self.grid_size
        log.info("%s: position embedding resampled from %dx%d to %dx%d patches", source, old, old, *grid)
        return resample_abs_pos_embed(
            pos_embed.float(), list(grid), num_prefix_tokens=1, interpolation="bicubic", antialias=False
        ).to(pos_embed.dtype)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.vision_proj(self.visual_encoder.forward_features(images)[:, 0])

    def encode_image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vision_proj(self.visual_encoder.forward_features(images))  # timm's final norm included
        return tokens[:, 0], tokens[:, self.visual_encoder.num_prefix_tokens :].unflatten(1, self.grid_size)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            list(prompts),
            padding="longest",
            truncation=True,
            max_length=self.arch.text.context_length,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.text_encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
        return self.text_proj(hidden[:, 0])

    def prompt_token_embeddings(self, texts: Sequence[str], slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(list(texts), padding="longest", return_tensors="pt").to(self.device)
        ids, mask = tokens.input_ids, tokens.attention_mask  # [CLS] words [SEP] [PAD]...
        if ids.shape[1] + slots > self.arch.text.context_length:
            raise ValueError(
                f"{slots} context tokens and the longest class text ({ids.shape[1]} tokens with [CLS] and "
                f"[SEP]) exceed the text context of {self.arch_name} ({self.arch.text.context_length} "
                "tokens); shorten the context"
            )
        ids = torch.cat([ids[:, :1], ids.new_zeros(len(ids), slots), ids[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1], mask.new_ones(len(mask), slots), mask[:, 1:]], dim=1)
        embeddings = self.text_encoder.embeddings.word_embeddings(ids)
        embeddings[:, 1 : 1 + slots] = 0
        return embeddings, mask

    def encode_text_embeddings(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder(inputs_embeds=embeddings, attention_mask=tokens).last_hidden_state
        return self.text_proj(hidden[:, 0])

    def word_embeddings(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0].to(self.device)
        return self.text_encoder.embeddings.word_embeddings(ids)

    @property
    def logit_scale(self) -> torch.Tensor:
        return 1.0 / self.temp.clamp(0.001, 0.5)  # the range ALBEF and BLIP clamp their temperature to

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.image_size // self.arch.vision.patch_size
        return side, side

    @property
    def embed_dim(self) -> int:
        return self.arch.embed_dim

    def vision_blocks(self) -> list[nn.Module]:
        return list(self.visual_encoder.blocks)

    def vision_block_norms(self) -> list[nn.Module]:
        return [block.norm1 for block in self.vision_blocks()]

    def capture_attention(self, compiled: bool = False) -> AbstractContextManager[list[torch.Tensor]]:
        return capture_attention([block.attn for block in self.vision_blocks()], compiled)

    def image_parameters(self) -> list[nn.Parameter]:
        return [*self.visual_encoder.parameters(), *self.vision_proj.parameters()]

    def describe(self) -> dict[str, Any]:
        return {
            "adapter": self.family,
            "arch": self.arch_name,
            "tokenizer": self.tokenizer_source,
            "pretrained": self.pretrained,
            "image_size": self.image_size,
        }


def _bert(config: TextConfig, token_types: bool) -> nn.Module:
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.width,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_positions,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            layer_norm_eps=1e-12,
            pad_token_id=0,
        ),
        add_pooling_layer=False,
    )
    if not token_types:
        bert.embeddings.token_type_embeddings = _NoTokenTypes()
    return bert
