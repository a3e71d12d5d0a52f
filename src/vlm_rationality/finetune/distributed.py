"""Data-parallel training under torchrun: the same run as one process, its batches spread over the ranks.

Every rank walks the same seeded sequence of global batches and encodes only its contiguous share of each
(the distributed sampler). Per-sample outputs are gathered with a differentiable all-gather, so every rank
computes the loss of the *whole* global batch, contrastive negatives included; the loop back-propagates
loss / world and sums the gradients over the ranks, which is the gradient of the global-batch loss, as
one process would compute it. Only rank 0 writes files.

The methods call the model's encoders rather than one forward, so this is DistributedDataParallel's algorithm
(broadcast-free, since every rank builds the same seeded model; all-reduce of gradients after backward)
without its module wrapper.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) and yield this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield device
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
        dist.barrier()  # the others wait until rank 0 has written its files
    finally:
        dist.destroy_process_group()


def share(index: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous part of a global batch (sizes differ by at most one)."""
    rank, size = world()
    return index.tensor_split(size)[rank] if size > 1 else index


def gather(local: torch.Tensor, total: int) -> torch.Tensor:
    """Concatenate every rank's `share` outputs back into global-batch order, keeping the autograd graph."""
    rank, size = world()
    if size == 1:
        return local
    sizes = [len(part) for part in torch.arange(total).tensor_split(size)]
    padded = F.pad(local, (0, 0) * (local.dim() - 1) + (0, max(sizes) - len(local)))
    parts = dist.nn.functional.all_gather(padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def sum_gradients(parameters: Sequence[nn.Parameter]) -> None:
    """All-reduce (sum) the gradients, in one flat buffer per dtype and device."""
    if world()[1] == 1:
        return
    for p in parameters:  # a rank whose share was empty has no gradient where the others have one
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in parameters if p.grad is not None]
    for key in {(g.dtype, g.device) for g in grads}:
        group = [g for g in grads if (g.dtype, g.device) == key]
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        for g, part in zip(group, flat.split([g.numel() for g in group])):
            g.copy_(part.view_as(g))
