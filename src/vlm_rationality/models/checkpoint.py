"""safetensors checkpoints, written atomically."""

from __future__ import annotations

import os
from typing import Mapping

import torch
from safetensors.torch import load_file, save_file

from vlm_rationality.io import atomic_path


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist; run the stage that writes it")
    return load_file(str(path), device=str(device))
