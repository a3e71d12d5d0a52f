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


def model_config(arch: str) -> dict[str, Any]:
    configs = model_configs()
    name = arch.replace("/", "-")
    if name not in configs:
        raise KeyError(f"unknown open_clip arch {arch!r}; e.g. ViT-B-16, ViT-B-32, tiny-vit-64")
    return configs[name]


def pretrained_tags(arch: str) -> list[str]:
    return list(_module("pretrained").list_pretrained_tags_by_model(arch.replace("/", "-")))


def imagenet_class_names() -> list[str]:
    """CLIP's curated names of the 1000 ImageNet classes, as open_clip ships them."""
    return list(_module("zero_shot_metadata").IMAGENET_CLASSNAMES)
