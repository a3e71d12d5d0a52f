"""What the config check and job sizing need from each model adapter, read from its architecture files alone.

Snakemake parses the workflow at every start (on a cluster, inside every job too); checking model entries and
sizing jobs then must not import torch, open_clip, timm or transformers, nor load a tokenizer. So each model
adapter family has an `Arch` here, registered under the adapter's name, that checks a config entry (arch,
weights and tokenizer paths) and tells the vision depth and the parameter count from the architecture's JSON.
The adapters themselves (models/) build from the same files.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_rationality import open_clip_data
from vlm_rationality.io import read_json
from vlm_rationality.registry import Registry

CONFIG_DIR = Path(__file__).parents[1] / "models" / "configs"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def transformer_parameters(width: int, layers: int, mlp_ratio: float = 4.0) -> int:
    """Attention (4·W²) plus MLP (2·ratio·W²) weights per layer; biases and norms are noise at this scale."""
    return int(layers * (4 + 2 * mlp_ratio) * width * width)


class Arch(ABC):
    """A model adapter's architecture, as data."""

    @abstractmethod
    def check(self, **spec: Any) -> None:
        """Check a config entry's names and paths (without `adapter` and `pretrain`) before any job runs."""

    @abstractmethod
    def vision_layers(self, **spec: Any) -> int:
        """Depth of the vision tower: bounds the heatmap start_block."""

    @abstractmethod
    def approx_parameters(self, **spec: Any) -> int:
        """Parameter count, to size a job's memory."""

    @abstractmethod
    def input_size(self, **spec: Any) -> int:
        """Side of the square images the model takes: every dataset it sees is prepared at this size."""

    @abstractmethod
    def vision_shape(self, **spec: Any) -> tuple[int, int, int, int]:
        """(layers, heads, tokens, width) of the vision tower at its input size: what an explanation holds."""


MODEL_ARCHS: Registry[Arch] = Registry("model adapter")


def _entry(config: dict[str, Any]) -> tuple[Arch, dict[str, Any]]:
    """The adapter's facts and its own settings (`normalization` applies to every adapter: models/base.py)."""
    spec = {key: value for key, value in config.items() if key not in ("adapter", "pretrain", "normalization")}
    return MODEL_ARCHS.get(config["adapter"]), spec


def check_model(config: dict[str, Any]) -> int:
    """Check a model config entry with its adapter's own rules; returns the depth of its vision tower."""
    arch, spec = _entry(config)
    arch.check(**spec)
    return arch.vision_layers(**spec)


def approx_parameters(config: dict[str, Any]) -> int:
    arch, spec = _entry(config)
    return arch.approx_parameters(**spec)


def input_size(config: dict[str, Any]) -> int:
    arch, spec = _entry(config)
    return arch.input_size(**spec)


def vision_shape(config: dict[str, Any]) -> tuple[int, int, int, int]:
    arch, spec = _entry(config)
    return arch.vision_shape(**spec)


# Bytes an explanation holds per image, per block: per attention weight (heads x tokens^2) and per token activation
# (tokens x width), fitted to the peak host memory of chefer on CPU (2 threads, batches of 2 and 8): ViT-B/16 at 224,
# 171 MiB per image; ViT-B/32, 38 MiB (gradcam 147 MiB and rollout 39 MiB on ViT-B/16 stay below chefer's).
BYTES_PER_ATTENTION, BYTES_PER_ACTIVATION = 6, 82


def explain_bytes_per_image(config: dict[str, Any]) -> int:
    """Memory one image adds to an explain batch (activations and attention kept for the backward pass)."""
    layers, heads, tokens, width = vision_shape(config)
    return layers * (BYTES_PER_ATTENTION * heads * tokens**2 + BYTES_PER_ACTIVATION * tokens * width)


def resolve_open_clip_pretrained(arch: str, pretrained: str | os.PathLike | None) -> str | None:
    """`pretrained` checked before any download or build: a known tag of `arch`, an existing file, or None."""
    if pretrained in (None, "", "none"):
        return None
    pretrained = str(pretrained)
    if pretrained.endswith(CHECKPOINT_SUFFIXES) or os.sep in pretrained:
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"open_clip checkpoint {pretrained!r} (model {arch}) does not exist")
        return pretrained
    tags = open_clip_data.pretrained_tags(arch)
    if pretrained not in tags:
        raise KeyError(
            f"{pretrained!r} is neither a file nor a pretrained tag of open_clip model {arch}; "
            f"tags: {', '.join(tags) or 'none'}"
        )
    return pretrained


class OpenCLIPArch(Arch):
    def check(self, arch: str, pretrained: str | None = None, **others: Any) -> None:
        if others:
            raise ValueError(
                f"{', '.join(sorted(others))}: not a setting of the open_clip adapter (tokenizer and "
                "image_size are albef/blip settings)"
            )
        open_clip_data.model_config(arch)
        resolve_open_clip_pretrained(arch, pretrained)

    def vision_layers(self, arch: str, **_: Any) -> int:
        return int(open_clip_data.model_config(arch)["vision_cfg"]["layers"])

    def input_size(self, arch: str, **_: Any) -> int:
        size = open_clip_data.model_config(arch)["vision_cfg"]["image_size"]
        return int(size if isinstance(size, int) else size[0])

    def vision_shape(self, arch: str, **_: Any) -> tuple[int, int, int, int]:
        vision = open_clip_data.model_config(arch)["vision_cfg"]
        tokens = (self.input_size(arch) // vision["patch_size"]) ** 2 + 1
        return int(vision["layers"]), vision["width"] // vision.get("head_width", 64), tokens, int(vision["width"])

    def approx_parameters(self, arch: str, **_: Any) -> int:
        config = open_clip_data.model_config(arch)
        vision, text = config["vision_cfg"], config["text_cfg"]
        return (
            transformer_parameters(vision["width"], vision["layers"], vision.get("mlp_ratio", 4.0))
            + 3 * vision["patch_size"] ** 2 * vision["width"]
            + transformer_parameters(text["width"], text["layers"], text.get("mlp_ratio", 4.0))
            + text["vocab_size"] * text["width"]
        )


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


class BertViTArch(Arch):
    """ALBEF and BLIP: `configs/<adapter>/<arch>.json` (or the path of such a file)."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter

    def resolve(self, arch: str, image_size: int | None = None) -> ArchConfig:
        path = Path(arch) if arch.endswith(".json") else CONFIG_DIR / self.adapter / f"{arch}.json"
        if not path.is_file():
            known = sorted(p.stem for p in (CONFIG_DIR / self.adapter).glob("*.json"))
            raise KeyError(f"unknown {self.adapter} arch {arch!r}; known: {', '.join(known)} (or the path of a .json)")
        config = ArchConfig.from_json(path)
        if image_size is not None and image_size % config.vision.patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of {arch}'s patch size {config.vision.patch_size}"
            )
        return config

    def check(
        self,
        arch: str,
        tokenizer: str = "bert-base-uncased",
        pretrained: str | None = None,
        image_size: int | None = None,
    ) -> None:
        config = self.resolve(arch, image_size)
        if pretrained not in (None, "", "none") and not os.path.isfile(pretrained):
            raise FileNotFoundError(f"pretrained: {self.adapter} checkpoint {pretrained!r} does not exist")
        check_vocabulary(tokenizer, config.tokenizer_vocab_size)

    def vision_layers(self, arch: str, **_: Any) -> int:
        return self.resolve(arch).vision.layers

    def input_size(self, arch: str, image_size: int | None = None, **_: Any) -> int:
        return image_size or self.resolve(arch).image_size

    def vision_shape(self, arch: str, image_size: int | None = None, **_: Any) -> tuple[int, int, int, int]:
        v = self.resolve(arch).vision
        return v.layers, v.heads, (self.input_size(arch, image_size) // v.patch_size) ** 2 + 1, v.width

    def approx_parameters(self, arch: str, **_: Any) -> int:
        config = self.resolve(arch)
        v, t = config.vision, config.text
        return (
            transformer_parameters(v.width, v.layers, v.mlp_ratio)
            + 3 * v.patch_size**2 * v.width
            + transformer_parameters(t.width, t.layers, t.intermediate_size / t.width)
            + t.vocab_size * t.width
        )


MODEL_ARCHS.register("open_clip")(OpenCLIPArch())
for _adapter in ("albef", "blip"):
    MODEL_ARCHS.register(_adapter)(BertViTArch(_adapter))
