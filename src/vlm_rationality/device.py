"""Which device a stage runs on, and mixed precision on it: shared by training and explaining."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO, Iterator

import torch

from vlm_rationality.environment import JOBS_PER_GPU, gpu_locks, jobs_per_gpu

log = logging.getLogger(__name__)

AMP_DTYPES: dict[str | None, torch.dtype | None] = {
    None: None,
    "none": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


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


def take_slot(folder: Path, gpus: dict[int, str], slots: int) -> tuple[int, IO] | None:
    """The first GPU (index -> UUID) with a free slot, and the open lock file that holds it; None if all are taken.
    The lock is the kernel's (flock): it goes with the process, however the job ends."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, uuid in gpus.items():
        for slot in range(slots):
            handle = open(folder / f"{uuid}-{slot}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return index, handle
    return None


@contextmanager
def gpu_slot(device: str, poll_seconds: float = 2.0) -> Iterator[str]:
    """The device a job runs on, held for the job: on a machine with several GPUs, Snakemake starts GPU jobs side
    by side, and each of `auto`/`cuda` would land on cuda:0. Each job takes the first GPU with a free slot (lock
    files named by the GPU's UUID, so jobs that each see their own GPU as cuda:0 under SLURM never wait on each
    other) and waits while every slot is taken. `cuda:N` waits for GPU N; `cpu`, a machine without CUDA and the
    ranks of a data-parallel run (torchrun places them) are left as they are."""
    if device == "cpu" or not torch.cuda.is_available() or "LOCAL_RANK" in os.environ:
        yield device
        return
    candidates = [int(device.split(":")[1])] if ":" in device else list(range(torch.cuda.device_count()))
    gpus = {
        index: str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or f"cuda-{index}")
        for index in candidates
    }  # the UUID names the physical GPU whatever CUDA_VISIBLE_DEVICES numbers it
    folder, slots = gpu_locks(), jobs_per_gpu()  # one folder per machine, shared by every job of this user
    taken = take_slot(folder, gpus, slots)
    if taken is None:
        log.info("every GPU slot is taken (%d job(s) per GPU: %s); waiting for one", slots, JOBS_PER_GPU)
    while taken is None:
        time.sleep(poll_seconds)
        taken = take_slot(folder, gpus, slots)
    index, handle = taken
    try:
        log.info("running on cuda:%d (%s)", index, gpus[index])
        torch.cuda.set_device(index)
        yield f"cuda:{index}"
    finally:
        handle.close()
