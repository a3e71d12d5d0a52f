"""An open_clip model behind the benchmark's protocol (built by `open_clip_adapter.py`, which checks its entry)."""

from __future__ import annotations

import pickle
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import get_model_preprocess_cfg
from open_clip.transformer import VisionTransformer, text_global_pool
from safetensors import SafetensorError
from torch import nn

from vlm_rationality import open_clip_data
from vlm_rationality.models.attention import capture_attention
from vlm_rationality.models.base import Preprocess, VisionLanguageModel, refused_pickle

# Tiny architectures for the synthetic benchmark and the tests, registered next to open_clip's own.
CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)
TOKEN_CACHE = 1 << 16


def _open_clip_name(arch: str) -> str:
    """What open_clip builds `arch` from: its own name, or for `hf-hub:<org>/<repo>` the cached snapshot's folder
    (open_clip's `local-dir:`), so that loading never reaches the network."""
    if arch.startswith(open_clip_data.HF_HUB):
        return f"local-dir:{open_clip_data.hub_snapshot(arch)}"
    if arch.replace("/", "-") not in open_clip.list_models():
        raise KeyError(f"unknown open_clip arch {arch!r}; e.g. ViT-B-16, ViT-B-32, tiny-vit-64")
    return arch


class TokenSubset(nn.Module):
    """The rows `ids` of a token table, trained in its place (`OpenCLIP.training_vocabulary`); the other rows wait
    in `rest`. Looking rows up through `index` keeps the gradient's per-row sums in the full table's order."""

    def __init__(self, table: nn.Embedding, ids: torch.Tensor) -> None:
        super().__init__()
        weight = table.weight.detach()
        kept = torch.zeros(len(weight), dtype=torch.bool, device=weight.device)
        kept[ids] = True
        self.weight = nn.Parameter(weight[kept].clone(), requires_grad=table.weight.requires_grad)
        self.register_buffer("rest", weight[~kept].clone())
        index = torch.full((len(weight),), -1, dtype=torch.long, device=weight.device)
        index[kept] = torch.arange(int(kept.sum()), device=weight.device)
        self.register_buffer("index", index)  # a row's place in `weight`, -1 for the rows in `rest`

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = self.index[tokens]
        if bool((rows < 0).any()):
            raise ValueError(
                "a text outside the training vocabulary was encoded during training: pass every text "
                "the steps encode to training_vocabulary"
            )
        return F.embedding(rows, self.weight)

    @torch.no_grad()
    def write_back(self, table: nn.Embedding) -> None:
        kept = self.index >= 0
        table.weight[kept] = self.weight
        table.weight[~kept] = self.rest


class OpenCLIP(VisionLanguageModel):
    def __init__(
        self, model: nn.Module, arch: str, pretrained: str | None, name: str | None = None, forced: int | None = None
    ) -> None:
        """`forced`: the input size it was built at where that is not the architecture's own."""
        super().__init__()
        visual = getattr(model, "visual", None)
        if not isinstance(visual, VisionTransformer):
            raise NotImplementedError(
                f"open_clip model {arch}: the vision tower is {type(visual).__name__}; heatmaps need open_clip's "
                "VisionTransformer (ResNet and timm towers have no attention blocks to explain)"
            )
        if visual.attn_pool is not None or visual.pool_type != "tok":
            raise NotImplementedError(
                f"open_clip model {arch}: pooling '{visual.pool_type}' / attentional pool is not supported; "
                "the rollout explains the CLS token"
            )
        self.model = model.eval()
        self.arch = arch
        self.pretrained = pretrained
        self.forced_size = forced
        self.tokenizer = open_clip.get_tokenizer(name or arch)
        self._token_ids: dict[str, torch.Tensor] = {}
        cfg = get_model_preprocess_cfg(model)
        size = cfg["size"]
        size = size if isinstance(size, int) else size[0]
        self.preprocess = Preprocess(int(size), tuple(cfg["mean"]), tuple(cfg["std"]))

    @classmethod
    def load(cls, arch: str, source: str | None, image_size: int | None = None) -> "OpenCLIP":
        """`source`: a pretrained tag of `arch`, a checkpoint file or None (as the adapter resolved it); `image_size`:
        another input size than the architecture's (open_clip resamples the position embedding as it loads)."""
        name = _open_clip_name(arch)
        try:
            model = open_clip.create_model(name, pretrained=source, force_image_size=image_size)
        except (
            pickle.UnpicklingError
        ) as err:  # torch's message advises weights_only=False, which runs the pickle's code
            raise refused_pickle(source, err) from None
        except SafetensorError as err:  # a truncated or damaged file: safetensors' message does not name it
            raise ValueError(
                f"checkpoint {source} is not a readable safetensors file ({err}); delete it and rerun the "
                "stage that writes it (or restore the file)"
            ) from err
        except RuntimeError as err:
            raise RuntimeError(
                f"could not load open_clip {arch} weights {source!r}: {err}. Without network access, download the "
                "checkpoint elsewhere and set the model's `pretrained` to the local file"
            ) from err
        return cls(model, arch, source, name, image_size)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def encode_image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self.model.visual
        if not hasattr(visual, "output_tokens") or getattr(visual, "attn_pool", None) is not None:
            raise NotImplementedError(f"open_clip model {self.arch}: patch tokens are read from plain CLS-token ViTs")
        visual.output_tokens = True
        try:
            pooled, tokens = visual(images)  # tokens: the patches after ln_post, before the projection
        finally:
            visual.output_tokens = False
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        return pooled, tokens.unflatten(1, self.grid_size)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.model.encode_text(self._tokens(prompts))

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids [T, L] of `texts`, each text tokenized once per model (its row does not depend on the others):
        training re-encodes the same captions and class prompts every step, and tokenizing them there was 3 % of
        a pretraining step. At most TOKEN_CACHE texts are kept."""
        new = [text for text in dict.fromkeys(texts) if text not in self._token_ids]
        if len(self._token_ids) + len(new) > TOKEN_CACHE:  # past the bound: tokenized afresh, not kept
            return self.tokenizer(list(texts)).to(self.device)
        if new:
            self._token_ids.update(zip(new, self.tokenizer(new)))
        return torch.stack([self._token_ids[text] for text in texts]).to(self.device)

    @contextmanager
    def training_vocabulary(self, texts: Sequence[str]) -> Iterator[list[torch.Tensor]]:
        """CLIP's table has 49,408 rows; the synthetic captions use 35. Training all of them cost 13-16 % of a
        pretraining step (the dense gradient, AdamW's update of every row), for rows no step reads."""
        table = getattr(self.model, "token_embedding", None)
        if not isinstance(table, nn.Embedding):
            yield []
            return
        subset = TokenSubset(table, torch.unique(self._tokens(list(dict.fromkeys(texts)))))
        self.model.token_embedding = subset
        try:
            yield [subset.rest]
        finally:
            self.model.token_embedding = table
            subset.write_back(table)

    def _text_tower(self) -> nn.Module:
        if not hasattr(self.model, "token_embedding"):
            raise NotImplementedError(
                f"open_clip model {self.arch}: its text tower is not open_clip's own transformer; "
                "prompt learning reads and feeds its token embeddings"
            )
        return self.model

    def prompt_token_embeddings(self, texts: Sequence[str], slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        tower = self._text_tower()
        ids = self.tokenizer(list(texts)).to(self.device)  # [T, L]: start token, words, end token, zero padding
        length, longest = ids.shape[1], int((ids != 0).sum(1).max())
        if longest + slots > length:
            raise ValueError(
                f"{slots} context tokens and the longest class text ({longest} tokens with start and end) "
                f"exceed the text context of {self.arch} ({length} tokens); shorten the context"
            )
        # The slots hold token 0: the pooling (argmax id = end token, or the eos id) finds the end token as before.
        ids = torch.cat([ids[:, :1], ids.new_zeros(len(ids), slots), ids[:, 1 : length - slots]], dim=1)
        embeddings = tower.token_embedding(ids)
        embeddings[:, 1 : 1 + slots] = 0
        return embeddings, ids

    def encode_text_embeddings(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        tower = self._text_tower()  # open_clip's CLIP.encode_text after its token lookup
        cast = tower.transformer.get_cast_dtype()
        x = embeddings.to(cast) + tower.positional_embedding.to(cast)
        x = tower.ln_final(tower.transformer(x, attn_mask=tower.attn_mask))
        x = text_global_pool(x, tokens, tower.text_pool_type, eos_token_id=getattr(tower, "text_eos_id", None))
        projection = tower.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    def word_embeddings(self, text: str) -> torch.Tensor:
        ids = self.tokenizer([text])[0].to(self.device)
        return self._text_tower().token_embedding(ids[1 : int((ids != 0).sum()) - 1])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.model.visual.grid_size)  # type: ignore[return-value]

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    def vision_blocks(self) -> list[nn.Module]:
        return list(self.model.visual.transformer.resblocks)

    def vision_block_norms(self) -> list[nn.Module]:
        return [block.ln_1 for block in self.vision_blocks()]

    def capture_attention(self, compiled: bool = False) -> AbstractContextManager[list[torch.Tensor]]:
        return capture_attention([block.attn for block in self.vision_blocks()], compiled)

    def image_parameters(self) -> list[nn.Parameter]:
        return list(self.model.visual.parameters())

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_backbone_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)

    def describe(self) -> dict[str, Any]:
        described = {"adapter": "open_clip", "arch": self.arch, "pretrained": self.pretrained}
        return described if self.forced_size is None else {**described, "image_size": self.forced_size}
