"""safetensors checkpoints, written atomically: backbones, and classifiers (backbone + head) with a sidecar."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from vlm_rationality.io import atomic_path, write_json
from vlm_rationality.models.base import VisionLanguageModel, build_model
from vlm_rationality.models.classifier_spec import sidecar_path
from vlm_rationality.models.heads import ClipAdapter, ImageClassifier, PromptContext, Prompts, build_classifier
from vlm_rationality.provenance import provenance

PROVENANCE_KEY = "vlm_rationality.provenance"  # in the safetensors header: what wrote the checkpoint


def save_state_dict(
    state: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()}
    metadata = {**(metadata or {}), PROVENANCE_KEY: json.dumps(provenance(), sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        _sort_metadata(tmp)


def _sort_metadata(path: str | os.PathLike) -> None:
    """safetensors writes its metadata map in hash order, which differs between processes: sorted in place (same
    header length, tensors untouched), identical runs give byte-identical checkpoints."""
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(
            {"__metadata__": header.pop("__metadata__"), **header}, separators=(",", ":"), ensure_ascii=False
        ).encode()
        if len(text) <= size:  # the same JSON, compact as safetensors writes it; padded as it pads
            handle.seek(8)
            handle.write(text.ljust(size, b" "))


def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist; run the stage that writes it")
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error type for a damaged or foreign file
        raise ValueError(
            f"checkpoint {path} is not a readable safetensors file ({err}); delete it and rerun the stage "
            "that writes it"
        ) from err


def save_classifier(classifier: ImageClassifier, path: str | os.PathLike, sidecar: dict[str, Any]) -> None:
    """`model.*` holds the backbone in its library's own layout, `head.*` the classifier head, `adapter.*` a
    CLIP-Adapter (its reduction and ratio in the metadata), `context.*` CoOp's context (its class texts in the
    metadata; the head holds the text embeddings computed from it)."""
    state = {f"model.{k}": v for k, v in classifier.model.backbone_state_dict().items()}
    state.update({f"head.{k}": v for k, v in classifier.head.state_dict().items()})
    metadata = {"head_kind": classifier.kind, "head_input": classifier.head_input}
    if classifier.adapter is not None:
        state.update({f"adapter.{k}": v for k, v in classifier.adapter.state_dict().items()})
        metadata["adapter"] = json.dumps({"reduction": classifier.adapter.reduction, "ratio": classifier.adapter.ratio})
    if classifier.context is not None:
        state["context.context"] = classifier.context.context
        metadata["context_texts"] = json.dumps(classifier.context.texts)
    write_json(sidecar, sidecar_path(path))  # first: the checkpoint's mtime is what Snakemake checks
    save_state_dict(state, path, metadata=metadata)


def load_classifier(model_spec: dict[str, Any], path: str | os.PathLike) -> ImageClassifier:
    """Rebuild a fine-tuned classifier; weights come from the checkpoint, not from `pretrained`."""
    state, metadata = read_classifier_file(path)  # first: a wrong file fails before the model is built
    return classifier_from_state(build_model({**model_spec, "pretrained": None}), state, metadata)


def read_classifier_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state and metadata of a classifier checkpoint of this project, or an error saying what the file is not."""
    state = load_state_dict(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("head_kind") not in ("prompt", "linear") or "head.weight" not in state:
        raise ValueError(f"{path} is not a classifier checkpoint (no head_kind metadata or head.weight)")
    return state, metadata


def classifier_from_state(
    model: VisionLanguageModel, state: dict[str, torch.Tensor], metadata: dict[str, str]
) -> ImageClassifier:
    """`model` (its backbone overwritten) with the head, adapter and context of a classifier checkpoint's state."""
    kind, head_input = metadata["head_kind"], metadata.get("head_input", "cosine")
    model.load_backbone_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    weight = state["head.weight"]
    head = nn.Linear(weight.shape[1], weight.shape[0], bias="head.bias" in state)
    head.load_state_dict({k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")})
    adapter = None
    if "adapter" in metadata:
        adapter = ClipAdapter(weight.shape[1], **json.loads(metadata["adapter"]))
        adapter.load_state_dict({k[len("adapter.") :]: v for k, v in state.items() if k.startswith("adapter.")})
        adapter.requires_grad_(False)
    context = None
    if "context_texts" in metadata:
        context = PromptContext(state["context.context"], json.loads(metadata["context_texts"])).requires_grad_(False)
    return ImageClassifier(model, head.requires_grad_(False), kind, head_input, adapter, context).eval()


def method_classifier(model_spec: dict[str, Any], prompts: Prompts, checkpoint: str | None) -> ImageClassifier:
    """What a (model, method) classifies with: a fine-tuned method's checkpoint holds its classifier; without one
    (ZS) the base model's prompt head."""
    if checkpoint:
        return load_classifier(model_spec, checkpoint)
    return build_classifier(build_model(model_spec).eval(), "prompt", prompts)
