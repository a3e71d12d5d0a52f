"""The open_clip adapter: any ViT arch open_clip knows (and the tiny ones in `configs/`, and `hf-hub:<org>/<repo>`
models from the local Hugging Face cache), weights from a hub tag, a local file or none; its facts read from
open_clip's registries as data (`open_clip_data`), the model in `open_clip_model.py`."""

from __future__ import annotations

import os

from vlm_rationality import open_clip_data
from vlm_rationality.io import safetensors_header
from vlm_rationality.models.adapter import MODEL_ADAPTERS, ModelAdapter, transformer_parameters

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def safetensors_metadata(path: str) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's header ({} for another format), read without torch."""
    if not path.endswith(".safetensors"):
        return {}
    try:
        return safetensors_header(path).get("__metadata__") or {}
    except (OSError, ValueError):
        return {}  # a damaged file: its load names it


def resolve_open_clip_pretrained(arch: str, pretrained: str | os.PathLike | None) -> str | None:
    """`pretrained` checked before any download or build: a known tag of `arch`, an existing file, or None."""
    if arch.startswith(open_clip_data.HF_HUB):
        if pretrained not in (None, "", "none"):
            raise ValueError(f"{arch} holds its own weights (open_clip ignores `pretrained` for it); drop pretrained")
        return None
    if pretrained in (None, "", "none"):
        return None
    pretrained = str(pretrained)
    if pretrained.endswith(CHECKPOINT_SUFFIXES) or os.sep in pretrained:
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"open_clip checkpoint {pretrained!r} (model {arch}) does not exist")
        if "head_kind" in safetensors_metadata(pretrained):
            raise ValueError(
                f"{pretrained} is a classifier checkpoint of this project (a backbone and a head), not a model's "
                "weights: score it with a method of `kind: external` and `checkpoint:` that file (docs/your-model.md)"
            )
        return pretrained
    tags = open_clip_data.pretrained_tags(arch)
    if pretrained not in tags:
        raise KeyError(
            f"{pretrained!r} is neither a file nor a pretrained tag of open_clip model {arch}; "
            f"tags: {', '.join(tags) or 'none'}"
        )
    return pretrained


@MODEL_ADAPTERS.register("open_clip")
class OpenCLIPAdapter(ModelAdapter):
    compiles = True  # open_clip's own attention: its softmax runs under torch.compile
    options = {
        "image_size": {
            "type": "integer",
            "minimum": 1,
            "description": "input size, if not the architecture's own (open_clip's force_image_size: the position "
            "embedding is resampled, bicubic, as the weights load)",
        },
    }

    def __init__(self, arch: str, pretrained: str | None = None, *, image_size: int | None = None) -> None:
        super().__init__(arch, pretrained)
        self.image_size = image_size

    def check(self) -> None:
        self.input_size()
        resolve_open_clip_pretrained(self.arch, self.pretrained)

    def input_size(self) -> int:
        vision = open_clip_data.model_config(self.arch)["vision_cfg"]
        if self.image_size is not None:
            patch = vision.get("patch_size", 1)
            if self.image_size % patch:
                raise ValueError(f"image_size {self.image_size} is not a multiple of {self.arch}'s patch size {patch}")
            return self.image_size
        size = vision["image_size"]
        return int(size if isinstance(size, int) else size[0])

    def vision_shape(self) -> tuple[int, int, int, int]:
        vision = open_clip_data.model_config(self.arch)["vision_cfg"]
        tokens = (self.input_size() // vision["patch_size"]) ** 2 + 1
        return int(vision["layers"]), vision["width"] // vision.get("head_width", 64), tokens, int(vision["width"])

    def approx_parameters(self) -> int:
        config = open_clip_data.model_config(self.arch)
        vision, text = config["vision_cfg"], config["text_cfg"]
        return (
            transformer_parameters(vision["width"], vision["layers"], vision.get("mlp_ratio", 4.0))
            + 3 * vision["patch_size"] ** 2 * vision["width"]
            + transformer_parameters(text["width"], text["layers"], text.get("mlp_ratio", 4.0))
            + text["vocab_size"] * text["width"]
        )

    def build(self):
        from vlm_rationality.models.open_clip_model import OpenCLIP

        return OpenCLIP.load(self.arch, resolve_open_clip_pretrained(self.arch, self.pretrained), self.image_size)
