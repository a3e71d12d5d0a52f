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
    """Mixed precision on CUDA; `amp_dtype` None is full precision anywhere."""
    if amp_dtype is None:
        return nullcontext()
    if device.type != "cuda":
        raise ValueError("mixed-precision heatmaps (heatmaps.amp) need a CUDA device; set amp: none on CPU")
    return torch.autocast("cuda", dtype=amp_dtype)
