"""What the benchmark scripts share: the device arguments, synchronisation and peak memory."""

from __future__ import annotations

import argparse
import re
import resource
from pathlib import Path

import torch


def device_arguments(parser: argparse.ArgumentParser, *, images: tuple[int, int], batch_size: tuple[int, int]) -> None:
    """--device, --images, --batch-size, --classes, --amp, --threads; `images` and `batch_size` are the
    (CUDA, CPU) defaults; 1,000 classes on CUDA, 100 on CPU."""
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--images", type=int, default=images[0] if cuda else images[1])
    parser.add_argument("--batch-size", type=int, default=batch_size[0] if cuda else batch_size[1])
    parser.add_argument("--classes", type=int, default=1000 if cuda else 100)
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def setup(args: argparse.Namespace) -> torch.device:
    """Apply --threads, seed torch, and return the device."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return torch.device(args.device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float:
    """Peak GPU memory allocated, or the process's peak RSS on CPU (since `reset_peak`)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return host_peak_mib()


def host_peak_mib() -> float:
    """The process's peak resident memory: Linux's VmHWM (which `reset_peak` can restart), else ru_maxrss."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def reset_peak(device: torch.device) -> None:
    """Restart the peak memory counters: the GPU allocator's, and the process's VmHWM on Linux."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: the host peak then covers the whole process


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
