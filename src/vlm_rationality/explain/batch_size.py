"""`heatmaps.batch_size: auto`: the largest explain batch the GPU's free memory holds.

An explanation keeps every block's activations and attention for its backward pass, so memory grows linearly with
the batch; two small probe batches fit that line (a fixed part: weights, text features, workspaces; a part per
image), and the batch is where the line meets a share of the free memory. A sample's map does not depend on the
batch it is explained in (to float rounding), so the choice moves throughput, not results.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from vlm_rationality.explain.base import HeatmapMethod
from vlm_rationality.models.heads import ImageClassifier
from vlm_rationality.plan.sizing import CPU_BATCH

PROBES = (2, 8)  # images per probe batch: large enough that the per-image part dominates the noise
HEADROOM = 0.8  # share of the free memory a batch may take: the allocator fragments, the rest of the job allocates
MAX_BATCH = 2048  # beyond this a bigger batch buys nothing on any current GPU
MULTIPLE = 8  # batches rounded down to a multiple of 8 (tensor-core friendly shapes)


def fit_batch_size(
    peak_bytes: Callable[[int], int], free_bytes: int, headroom: float = HEADROOM, cap: int = MAX_BATCH
) -> int:
    """The batch whose peak, on the line through the peaks of the two probe batches, is `headroom` of `free_bytes`."""
    (small, large), (low, high) = PROBES, (peak_bytes(n) for n in PROBES)
    per_image = max(high - low, 1) / (large - small)
    fixed = max(low - per_image * small, 0.0)
    fits = int((headroom * free_bytes - fixed) // per_image)
    if fits < 1:
        raise RuntimeError(
            f"heatmaps.batch_size auto: one image needs {per_image / 2**20:.0f} MiB beyond "
            f"{fixed / 2**20:.0f} MiB fixed, more than {headroom:.0%} of the {free_bytes / 2**20:.0f} MiB "
            "free on the device; free the device or set heatmaps.batch_size to a number"
        )
    fits = min(fits, cap)
    return fits - fits % MULTIPLE if fits >= MULTIPLE else fits


def auto_batch_size(explain: HeatmapMethod, classifier: ImageClassifier, device: torch.device) -> int:
    """Probe the explanation on blank images on `device` (CUDA) and fit the batch; CPU_BATCH on other devices."""
    if device.type != "cuda":
        return CPU_BATCH
    size = (classifier.model.preprocess.image_size,) * 2

    def peak_bytes(n: int) -> int:
        images = torch.zeros((n, *size, 3), dtype=torch.uint8, device=device)
        labels = torch.zeros(n, dtype=torch.long, device=device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        explain(classifier, classifier.model.preprocess(images), labels)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before

    explain(
        classifier,
        classifier.model.preprocess(torch.zeros((1, *size, 3), dtype=torch.uint8, device=device)),
        torch.zeros(1, dtype=torch.long, device=device),
    )  # lazy workspaces (cuBLAS, compiled kernels) are fixed cost
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return fit_batch_size(peak_bytes, free + cached)


@contextmanager
def batch_memory(batch_size: int, device: torch.device) -> Iterator[None]:
    """An explain batch that runs out of memory (CUDA's allocator, or the CPU's) fails naming the setting to change."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
        if (
            isinstance(err, RuntimeError)
            and not isinstance(err, torch.OutOfMemoryError)
            and "can't allocate memory" not in str(err)
        ):
            raise
        raise MemoryError(
            f"out of memory explaining a batch of {batch_size} images on {device}: lower "
            "heatmaps.batch_size, or on CUDA set it to auto, the "
            f"largest batch that fits in the GPU's free memory ({type(err).__name__}: "
            f"{str(err)[:200]})"
        ) from err
