"""A classifier fine-tuned elsewhere, loaded instead of trained, so that it is explained, scored, calibrated and
twinned like a method of this workflow.

Three sources, each one method entry (paths may hold `{dataset}` and `{model}`, filled per job):
- `weights`: the model fine-tuned elsewhere, in its library's layout (open_clip: the CLIP state dict, as WiSE-FT or
  FLYP save it): every key, or the image tower's alone over the base's `pretrained`; classified with the class
  prompts' zero-shot head, as FLCP-like models are used;
- `linear_head` (with or without `weights`): a linear head trained elsewhere, `weight` [classes, embed_dim] and
  optionally `bias`, on the L2-normalised (`head: cosine`) or raw (`head: linear`) image embedding: the LP case;
- `checkpoint`: a classifier checkpoint of this project from another run.
The finetune job writes the loaded classifier as this project's checkpoint; the training split is not read.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from vlm_rationality.finetune.base import FINETUNE_METHODS, Method
from vlm_rationality.models.base import VisionLanguageModel, refused_pickle
from vlm_rationality.models.checkpoint import classifier_from_state, read_classifier_file
from vlm_rationality.models.heads import ImageClassifier, build_classifier

WRAPPERS = ("state_dict", "model")  # how trainers wrap a state dict in torch.save({...})


def read_weights(path: str | os.PathLike, key: str) -> dict[str, torch.Tensor]:
    """A state dict saved elsewhere: safetensors, or a torch file of tensors (unwrapped from `state_dict`/`model`,
    DDP's `module.` prefix removed). A pickle of Python objects is refused: loading it could run code."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{key}: {path} does not exist")
    if str(path).endswith(".safetensors"):
        try:
            state = load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"{key}: {path} is not a readable safetensors file ({err})") from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise refused_pickle(path, err, key) from None
        except (RuntimeError, EOFError, OSError) as err:
            raise ValueError(f"{key}: {path} is not a readable torch file ({err})") from err
        for wrapper in WRAPPERS:
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{key}: {path} holds no state dict of tensors (names -> tensors)")
    if all(name.startswith("module.") for name in state):
        state = {name.removeprefix("module."): tensor for name, tensor in state.items()}
    return state


def load_weights(model: VisionLanguageModel, path: str, key: str) -> dict[str, int]:
    """Every backbone key of `path`, or the image tower's alone (the rest stays the base's); returns the counts."""
    state = read_weights(path, key)
    current = model.backbone_state_dict()
    unknown = sorted(set(state) - set(current))
    if unknown:
        raise ValueError(
            f"{key}: {path} has {len(unknown)} key(s) the model's layout lacks, e.g. {', '.join(unknown[:3])}; "
            f"expected names such as {', '.join(list(current)[:3])} (the model's own library's layout)"
        )
    image = {p.data_ptr() for p in model.image_parameters()}
    image_keys = {name for name, tensor in current.items() if tensor.data_ptr() in image}
    missing = sorted(image_keys - set(state))
    if missing and set(state) != set(current):
        raise ValueError(
            f"{key}: {path} lacks {len(missing)} key(s) of the image tower, e.g. {', '.join(missing[:3])}: give "
            "every key of the model, or at least every key of its image tower"
        )
    mismatched = [name for name, tensor in state.items() if tensor.shape != current[name].shape]
    if mismatched:
        name = mismatched[0]
        raise ValueError(
            f"{key}: {path} does not fit the configured model: {name} is {tuple(state[name].shape)}, the model's "
            f"{tuple(current[name].shape)} ({len(mismatched)} such key(s)); check the model's arch"
        )
    model.load_backbone_state_dict({**current, **{name: t.to(current[name].dtype) for name, t in state.items()}})
    return {"loaded_keys": len(state), "base_keys_kept": len(set(current) - set(state))}


def linear_head(path: str, key: str, classes: int, dim: int, device: torch.device) -> nn.Linear:
    state = read_weights(path, key)
    weight, bias = state.get("weight"), state.get("bias")
    if weight is None or set(state) - {"weight", "bias"}:
        raise ValueError(f"{key}: {path} must hold `weight` [classes, embed_dim] and optionally `bias` [classes]")
    if tuple(weight.shape) != (classes, dim) or (bias is not None and tuple(bias.shape) != (classes,)):
        raise ValueError(
            f"{key}: {path} holds weight {tuple(weight.shape)}"
            f"{'' if bias is None else f' and bias {tuple(bias.shape)}'}; this dataset and model need "
            f"weight ({classes}, {dim}) and bias ({classes},)"
        )
    head = nn.Linear(dim, classes, bias=bias is not None, device=device)
    head.load_state_dict({name: tensor.float() for name, tensor in state.items()})
    return head.requires_grad_(False)


@FINETUNE_METHODS.register(
    "external",
    trains=True,
    loads=True,
    head="loaded",
    files=["checkpoint", "weights", "linear_head"],
    options={
        "checkpoint": {
            "type": "string",
            "minLength": 1,
            "description": "a classifier checkpoint of this project from another run (its .safetensors file)",
        },
        "weights": {
            "type": "string",
            "minLength": 1,
            "description": (
                "the model fine-tuned elsewhere in its library's layout (open_clip: the CLIP state dict), safetensors "
                "or a torch state dict: every key, or the image tower's alone over the base's `pretrained`"
            ),
        },
        "linear_head": {
            "type": "string",
            "minLength": 1,
            "description": (
                "a linear head trained elsewhere (`weight` [classes, embed_dim], optionally `bias`); `head` says "
                "whether it reads the L2-normalised embedding (cosine) or the raw one (linear)"
            ),
        },
    },
)
class External(Method):
    """Loads instead of training: no training settings, and the training split is not read."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.settings = None
        self.augment = False

    def fit(self, model, prompts, split, device) -> tuple[ImageClassifier, dict[str, Any]]:
        if "checkpoint" in self.config:
            state, metadata = read_classifier_file(self.config["checkpoint"])
            classifier, found = classifier_from_state(model, state, metadata), {}
        else:
            found = {}
            if "weights" in self.config:
                found = load_weights(model, self.config["weights"], "weights")
            if "linear_head" in self.config:
                head = linear_head(self.config["linear_head"], "linear_head", len(prompts), model.embed_dim, device)
                classifier = ImageClassifier(model, head, "linear", self.config["head"])
            else:
                classifier = build_classifier(model, "prompt", prompts)
        if classifier.num_classes != len(prompts):
            raise ValueError(f"the loaded classifier has {classifier.num_classes} classes, the dataset {len(prompts)}")
        return classifier.to(device).eval(), found
