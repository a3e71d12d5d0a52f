"""Model adapters and the models they build.

`adapter.py` is the torch-free part a config names (checked and sized at every Snakemake start); `base.py` the one
protocol every built model implements. Names are imported on first use, so reading an adapter imports no torch.
"""

from importlib import import_module
from typing import Any

_HOMES = {
    "MODEL_ADAPTERS": "adapter",
    "ModelAdapter": "adapter",
    "model_adapter": "adapter",
    "Preprocess": "base",
    "VisionLanguageModel": "base",
    "build_model": "base",
    "ImageClassifier": "heads",
    "build_classifier": "heads",
    "prompt_head": "heads",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
