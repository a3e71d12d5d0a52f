"""Which device a stage runs on, and mixed precision on it: shared by training and explaining."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

AMP_DTYPES: dict[str | None, torch.dtype | None] = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA where present; asking for CUDA without it fails rather than silently running on CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available; set device: auto or cpu")
    return torch.device(device)


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed precision: bf16 on CUDA or CPU (where it lets the bf16 maps be checked against fp32 without a GPU), fp16
    on CUDA only; `amp_dtype` None is full precision anywhere."""
    if amp_dtype is None:
        return nullcontext()
    if device.type != "cuda" and amp_dtype != torch.bfloat16:
        raise ValueError("fp16 heatmaps (heatmaps.amp: fp16) need a CUDA device; use bf16 or none on CPU")
    return torch.autocast(device.type, dtype=amp_dtype)
