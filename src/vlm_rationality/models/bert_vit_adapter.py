"""ALBEF and BLIP as data: their architecture files (`configs/<family>/<arch>.json`), the WordPiece vocabulary
they need, and the adapter both share (`albef.py` and `blip.py` state each checkpoint's layout); the model is
`bert_vit.py`'s ITC dual encoder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from vlm_rationality.io import read_json
from vlm_rationality.models.adapter import ModelAdapter, transformer_parameters

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class VisionConfig:
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int  # rows of the word embedding (BLIP adds [DEC] and [ENC] to the 30,522 WordPiece tokens)
    width: int
    layers: int  # the text-only layers the ITC path runs (ALBEF: the 6 below its fusion layers)
    heads: int
    intermediate_size: int
    max_positions: int = 512
    context_length: int = 35
    dropout: float = 0.1


@dataclass(frozen=True)
class ArchConfig:
    embed_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    vision: VisionConfig
    text: TextConfig
    tokenizer_vocab_size: int  # what the WordPiece vocabulary must hold (bert-base-uncased: 30,522)

    @classmethod
    def from_json(cls, path: Path) -> "ArchConfig":
        raw = read_json(path, "fix the architecture file")
        try:
            return cls(
                embed_dim=raw["embed_dim"],
                image_size=raw["image_size"],
                mean=tuple(raw["mean"]),
                std=tuple(raw["std"]),
                vision=VisionConfig(**raw["vision"]),
                text=TextConfig(**raw["text"]),
                tokenizer_vocab_size=raw["tokenizer_vocab_size"],
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"architecture file {path}: {err}") from err


def check_vocabulary(source: str, expected_size: int) -> None:
    """A WordPiece vocabulary as data: a directory's vocab.txt, or bert-base-uncased's in the Hugging Face cache.

    Its size is checked against what the architecture was trained with: transformers 5 silently returns a
    5-token tokenizer when the file is missing.
    """
    if os.path.isdir(source):
        path = os.path.join(source, "vocab.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"tokenizer {source!r}: the directory holds no vocab.txt (bert-base-uncased's WordPiece)"
            )
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            path = try_to_load_from_cache(source, "vocab.txt")
        except ValueError:  # not a valid repository name either (e.g. a path that does not exist)
            path = None
        if not isinstance(path, str):
            raise FileNotFoundError(
                f"tokenizer {source!r} is neither a directory with vocab.txt nor in the Hugging Face cache; "
                "put bert-base-uncased's vocab.txt in a directory and set the model's `tokenizer` to it"
            )
    with open(path, encoding="utf-8") as handle:
        size = sum(1 for line in handle if line.strip())
    if size != expected_size:
        raise ValueError(
            f"tokenizer {source!r} has {size} tokens, the architecture expects {expected_size}; "
            "is vocab.txt missing or from another model? (bert-base-uncased has 30,522)"
        )


class BertViTAdapter(ModelAdapter):
    """A ViT + BERT ITC model: `arch` is `configs/<family>/<arch>.json` or the path of such a file."""

    family: ClassVar[str]  # the folder of its architecture files, and its name in errors
    text_prefix: ClassVar[str]  # where the official file keeps the text-only BERT
    token_types: ClassVar[bool]  # whether that BERT has a token-type embedding
    options = {
        "tokenizer": {
            "type": "string",
            "default": "bert-base-uncased",
            "description": "a directory with bert-base-uncased's vocab.txt, or a name in the Hugging Face cache",
        },
        "image_size": {
            "type": "integer",
            "minimum": 1,
            "description": "input size, if not the architecture's own (the position embedding is resampled)",
        },
    }

    def __init__(
        self,
        arch: str,
        pretrained: str | None = None,
        *,
        tokenizer: str,
        image_size: int | None = None,
    ) -> None:
        super().__init__(arch, pretrained)
        self.tokenizer = tokenizer
        self.image_size = image_size

    def resolve(self) -> ArchConfig:
        path = Path(self.arch) if self.arch.endswith(".json") else CONFIG_DIR / self.family / f"{self.arch}.json"
        if not path.is_file():
            known = sorted(p.stem for p in (CONFIG_DIR / self.family).glob("*.json"))
            raise KeyError(
                f"unknown {self.family} arch {self.arch!r}; known: {', '.join(known)} (or the path of a .json)"
            )
        config = ArchConfig.from_json(path)
        if self.image_size is not None and self.image_size % config.vision.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of {self.arch}'s patch size {config.vision.patch_size}"
            )
        return config

    def check(self) -> None:
        config = self.resolve()
        if self.pretrained is not None and not os.path.isfile(self.pretrained):
            raise FileNotFoundError(f"pretrained: {self.family} checkpoint {self.pretrained!r} does not exist")
        check_vocabulary(self.tokenizer, config.tokenizer_vocab_size)

    def input_size(self) -> int:
        return self.image_size or self.resolve().image_size

    def vision_shape(self) -> tuple[int, int, int, int]:
        config = self.resolve()
        v = config.vision
        return v.layers, v.heads, ((self.image_size or config.image_size) // v.patch_size) ** 2 + 1, v.width

    def approx_parameters(self) -> int:
        config = self.resolve()
        v, t = config.vision, config.text
        return (
            transformer_parameters(v.width, v.layers, v.mlp_ratio)
            + 3 * v.patch_size**2 * v.width
            + transformer_parameters(t.width, t.layers, t.intermediate_size / t.width)
            + t.vocab_size * t.width
        )

    def build(self):
        from vlm_rationality.models.bert_vit import BertViT

        return BertViT.load(self)
