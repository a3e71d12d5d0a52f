"""A model adapter: what a config's `models.<name>.adapter` names, and the one file a new model family needs.

Snakemake checks the config and sizes every job at each start (on a cluster, inside every job too), so an
adapter answers without torch, open_clip, timm or transformers: it declares its own settings (`options`, which the
config check closes each model entry over), checks an entry's names and files, and tells the vision tower's shape
and the parameter count from the architecture's files. Only `build()` imports the ML stack, and returns the model
(`base.VisionLanguageModel`). Adapters register themselves (`@MODEL_ADAPTERS.register("name")` in any module of
this package) and are imported by name, on first use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from vlm_rationality.registry import Registry

if TYPE_CHECKING:
    from vlm_rationality.models.base import VisionLanguageModel

MODEL_ADAPTERS: Registry[type["ModelAdapter"]] = Registry("model adapter", ("vlm_rationality.models", "MODEL_ADAPTERS"))
# Keys of a model entry that are not the adapter's: the workflow's base pretraining, the input normalisation every
# adapter takes (applied by base.build_model), and whether each dataset is taken at its own size (plan/specs.py
# turns that into the adapter's `image_size`).
COMMON_KEYS = ("adapter", "pretrain", "normalization", "input_size")


def transformer_parameters(width: int, layers: int, mlp_ratio: float = 4.0) -> int:
    """Attention (4·W²) plus MLP (2·ratio·W²) weights per layer; biases and norms are noise at this scale."""
    return int(layers * (4 + 2 * mlp_ratio) * width * width)


class ModelAdapter(ABC):
    """One config entry's model, as data until `build()`."""

    options: ClassVar[dict[str, Any]] = {}  # JSON-schema properties of the adapter's settings beyond arch, pretrained
    compiles: ClassVar[bool] = False  # whether heatmaps.compile can run its attention through torch.compile

    def __init__(self, arch: str, pretrained: str | None = None) -> None:
        """An adapter with `options` takes them as keyword arguments of its own `__init__`."""
        self.arch = arch
        self.pretrained = None if pretrained in (None, "", "none") else str(pretrained)

    @abstractmethod
    def check(self) -> None:
        """Check the entry's names and files before any job runs; fails naming what is wrong and what to do."""

    @abstractmethod
    def input_size(self) -> int:
        """Side of the square images the model takes: every dataset it sees is prepared at this size."""

    @abstractmethod
    def vision_shape(self) -> tuple[int, int, int, int]:
        """(layers, heads, tokens, width) of the vision tower at its input size: what an explanation holds."""

    @abstractmethod
    def approx_parameters(self) -> int:
        """Parameter count, to size a job's memory."""

    @abstractmethod
    def build(self) -> "VisionLanguageModel":
        """The model, weights loaded (imports the ML stack)."""

    def vision_layers(self) -> int:
        """Depth of the vision tower: bounds a heatmap's start_block."""
        return self.vision_shape()[0]


def model_adapter(config: dict[str, Any]) -> ModelAdapter:
    """The adapter of a model config entry, e.g. {adapter: albef, arch: tiny-albef, tokenizer: …}."""
    spec = {key: value for key, value in config.items() if key not in COMMON_KEYS}
    return MODEL_ADAPTERS.get(config.get("adapter", "open_clip"))(**spec)
