"""The models and finetune stages: shards in, a checkpoint and its JSON sidecar out."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from vlm_rationality.device import resolve_device
from vlm_rationality.finetune.base import build_method
from vlm_rationality.finetune.data import Streaming, load_split
from vlm_rationality.finetune.distributed import is_main, process_group, world
from vlm_rationality.finetune.pretrain import pretrain_clip
from vlm_rationality.io import file_sha256, write_json
from vlm_rationality.models.base import build_model
from vlm_rationality.models.checkpoint import save_classifier, save_state_dict
from vlm_rationality.models.classifier_spec import sidecar_path


def _input_hashes(paths: Sequence[str | os.PathLike]) -> dict[str, str]:
    return {os.fspath(p): file_sha256(p) for p in paths}


def _streaming(training_data: dict[str, Any] | None) -> Streaming | None:
    return Streaming(**training_data) if training_data else None


def pretrain_base(
    model_spec: dict[str, Any],
    train_spec: dict[str, Any],
    shards: Sequence[str],
    out: str,
    device: str,
    training_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Contrastively pretrain `model_spec` on captioned shards, from scratch or from the weights its `pretrained`
    names (a continued pretraining); writes the backbone file. `training_data` (the config's section) decides
    whether the split is streamed from the shards."""
    dev = resolve_device(device)
    model = build_model(model_spec).to(dev)
    start = time.perf_counter()
    split = load_split(shards, with_captions=True, streaming=_streaming(training_data))
    metrics = pretrain_clip(model, split, train_spec, dev)
    sidecar = {
        "model": model_spec,
        "pretrain": train_spec,
        "metrics": metrics,
        "device": str(dev),
        "seconds": round(time.perf_counter() - start, 2),
        "streamed": split.streamed,
        "inputs": _input_hashes(shards),
    }
    write_json(sidecar, sidecar_path(out))
    save_state_dict(model.backbone_state_dict(), out)
    return sidecar


def finetune(
    model_spec: dict[str, Any],
    method_spec: dict[str, Any],
    prompts: Sequence[str],
    shards: Sequence[str],
    out: str,
    device: str,
    training_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune with one method; writes `out` (safetensors) and `out` with .json (config, metrics, hashes)."""
    method = build_method(method_spec)
    if not method.trains:
        raise ValueError(f"method kind {method_spec['kind']!r} trains nothing and writes no checkpoint")
    if not method.loads and not shards:
        raise ValueError(
            f"method kind {method_spec['kind']!r} trains on the training split, which has no prepared shards: check "
            "the split's size (and any carve that takes its items)"
        )
    with process_group(resolve_device(device)) as dev:  # under torchrun: one rank of a data-parallel run
        model = build_model(model_spec).to(dev)
        start = time.perf_counter()
        split = None if method.loads else load_split(shards, streaming=_streaming(training_data))
        classifier, metrics = method.fit(model, prompts, split, dev)
        inputs = _input_hashes(
            [
                *shards,
                *method_spec.get("validation", []),
                *(method_spec[key] for key in ("regions", *method.files) if key in method_spec),
            ]
        )
        if model_spec.get("pretrained") and Path(model_spec["pretrained"]).is_file():
            inputs.update(_input_hashes([model_spec["pretrained"]]))
        sidecar = {
            "model": model_spec,
            "method": method_spec,
            "prompts": list(prompts),
            "head_kind": classifier.kind,
            "metrics": metrics,
            "device": str(dev),
            "processes": world()[1],
            "streamed": split is not None and split.streamed,
            "seconds": round(time.perf_counter() - start, 2),
            "inputs": inputs,
        }
        if is_main():
            save_classifier(classifier, out, sidecar)
    return sidecar
