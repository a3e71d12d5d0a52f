"""open_clip's registries read as data: architecture configs, pretrained tags and ImageNet class names.

Checking a config and sizing jobs happen whenever Snakemake parses the workflow (on a cluster, inside every
job too), so they must not import torch. `import open_clip` does; its registry modules do not, so they are
loaded here as submodules of a stand-in package that skips open_clip/__init__, with pretrained.py's optional
safetensors.torch import held off (it only decides how weights are downloaded).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

OUR_CONFIGS = Path(__file__).parent / "models" / "configs"  # the tiny archs, registered beside open_clip's own
_STAND_IN = "_vlm_rationality_open_clip_data"


def _root() -> Path:
    spec = importlib.util.find_spec("open_clip")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("open_clip is not installed (pip install open_clip_torch)")
    return Path(spec.submodule_search_locations[0])


@cache
def _module(name: str) -> ModuleType:
    if _STAND_IN not in sys.modules:
        stand_in = types.ModuleType(_STAND_IN)
        stand_in.__path__ = [str(_root())]
        sys.modules[_STAND_IN] = stand_in
    held = {key: sys.modules.get(key) for key in ("safetensors.torch",)}
    sys.modules.update(dict.fromkeys(held))  # None: its import fails, and pretrained.py carries on without it
    try:
        return importlib.import_module(f"{_STAND_IN}.{name}")
    finally:
        for key, module in held.items():
            if module is None:
                del sys.modules[key]
            else:
                sys.modules[key] = module


@cache
def model_configs() -> dict[str, dict[str, Any]]:
    """Architecture name -> config, open_clip's JSON files and ours (ours win on a clash, as add_model_config)."""
    configs = {}
    for folder in (_root() / "model_configs", OUR_CONFIGS):
        for path in sorted(folder.glob("*.json")):
            config = json.loads(path.read_text())
            if all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
                configs[path.stem] = config
    return configs


HF_HUB = "hf-hub:"  # an open_clip model published on the Hugging Face Hub: `hf-hub:<org>/<repo>`
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def hub_snapshot(arch: str) -> Path:
    """The local Hugging Face cache's snapshot of an `hf-hub:<org>/<repo>` model (its open_clip_config.json and its
    weights), read from the cache only: a job never downloads, so a cluster's offline nodes behave as a laptop."""
    from huggingface_hub import constants, try_to_load_from_cache

    repo = arch.removeprefix(HF_HUB)
    config = try_to_load_from_cache(repo, "open_clip_config.json")
    if not isinstance(config, str):
        raise FileNotFoundError(
            f"{arch}: {repo}'s open_clip_config.json is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); on a connected machine run `huggingface-cli download {repo}` and copy its "
            "cache folder here (HF_HOME, or HF_HUB_CACHE, points at it; docs/your-model.md)"
        )
    folder = Path(config).parent
    if not any((folder / name).is_file() for name in HUB_WEIGHTS):
        raise FileNotFoundError(
            f"{arch}: the cached snapshot {folder} holds the config but no weights ({' or '.join(HUB_WEIGHTS)}); "
            f"download the repository whole (`huggingface-cli download {repo}`)"
        )
    return folder


def model_config(arch: str) -> dict[str, Any]:
    if arch.startswith(HF_HUB):
        config = json.loads((hub_snapshot(arch) / "open_clip_config.json").read_text())
        if not isinstance(config.get("model_cfg"), dict):
            raise ValueError(f"{arch}: its open_clip_config.json has no model_cfg; it is not an open_clip model")
        return config["model_cfg"]
    configs = model_configs()
    name = arch.replace("/", "-")
    if name not in configs:
        raise KeyError(f"unknown open_clip arch {arch!r}; e.g. ViT-B-16, ViT-B-32, tiny-vit-64")
    return configs[name]


def pretrained_tags(arch: str) -> list[str]:
    return list(_module("pretrained").list_pretrained_tags_by_model(arch.replace("/", "-")))


# The template sets open_clip ships, by the name a config gives them (finetune/zs.py's `templates`).
TEMPLATE_SETS = {"openai-imagenet": "OPENAI_IMAGENET_TEMPLATES", "simple-imagenet": "SIMPLE_IMAGENET_TEMPLATES"}


def templated_set(name: str) -> list[str]:
    """One of open_clip's prompt sets as templates with a `{name}` placeholder (open_clip ships them as functions of
    the class name)."""
    if name not in TEMPLATE_SETS:
        raise KeyError(f"unknown template set {name!r}; known: {', '.join(TEMPLATE_SETS)}")
    return [template("{name}") for template in getattr(_module("zero_shot_metadata"), TEMPLATE_SETS[name])]


def imagenet_class_names() -> list[str]:
    """CLIP's curated names of the 1000 ImageNet classes, as open_clip ships them."""
    return list(_module("zero_shot_metadata").IMAGENET_CLASSNAMES)
