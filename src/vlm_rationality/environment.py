"""The environment variables the package reads, each parsed in one place and refused by name when it cannot be
used (a bare ValueError or FileExistsError from deep in a job names no variable). No torch: the config check runs
`errors()` at every Snakemake start, so a bad value is reported before any job."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

GPU_LOCKS = "VLM_RATIONALITY_GPU_LOCKS"  # where the per-GPU lock files live (device.gpu_slot)
JOBS_PER_GPU = "VLM_RATIONALITY_JOBS_PER_GPU"  # jobs one GPU takes at once (1: a job has the GPU's memory to itself)
PROGRESS_SECONDS = "VLM_RATIONALITY_PROGRESS_SECONDS"  # seconds between two progress lines of a job


def jobs_per_gpu() -> int:
    text = os.environ.get(JOBS_PER_GPU, "1")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{JOBS_PER_GPU}={text!r}: give a whole number of jobs per GPU, at least 1 (or unset it: 1)")
    return value


def progress_seconds() -> float:
    text = os.environ.get(PROGRESS_SECONDS, "10")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{PROGRESS_SECONDS}={text!r}: give a positive number of seconds (or unset it: 10)")
    return value


def gpu_locks() -> Path:
    """The lock folder: the variable's, else one per user under the temp folder. It must be (or become) a folder."""
    folder = Path(os.environ.get(GPU_LOCKS) or Path(tempfile.gettempdir()) / f"vlm-rationality-gpus-{os.getuid()}")
    blocked = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ValueError(
            f"{GPU_LOCKS}={str(folder)!r}: {blocked} is a file, not a folder; point the variable at a folder (it is "
            "created if missing)"
        )
    return folder


def errors() -> list[str]:
    """Every variable that is set and unusable, one message each."""
    found = []
    for check in (jobs_per_gpu, progress_seconds, gpu_locks):
        try:
            check()
        except ValueError as err:
            found.append(f"environment: {err}")
    return found
