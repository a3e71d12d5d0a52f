"""The whole explain job, end to end, and where its time goes.

Writes prepared shards of `--images` random images at the model's input size (random box masks, `--classes`
labels), runs the real job on them (`explain_shards`: read + decode and the corruption of `--shift` ahead of the
model, in `--workers` processes, host -> device, forward + backward + rollout, RMA, write), then times each of those
steps alone and in line over the same shards, so the split names what the job's work is; end to end is less than
their sum where reading and corrupting overlap with the model. Prints images/s end to end and of the model alone,
the share of the job the device waits for the host, and peak memory. Random weights: the figures measure
throughput, not accuracy.

    python benchmarks/explain_job.py                   # CUDA: ViT-B-16 at 224, 10,240 images, 1,000 classes
    python benchmarks/explain_job.py --shift zoom_blur-3 --workers 15 --amp bf16
    python benchmarks/explain_job.py --amp bf16 --auto-batch                   # heatmaps.batch_size: auto
    python benchmarks/explain_job.py --arch tiny-vit-32 --images 64 --classes 10   # a CPU smoke test
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from _device import device_arguments, device_name, peak_mib, setup, sync

from vlm_rationality.artefacts import write_prepared_shard
from vlm_rationality.data.corruptions import apply_shift
from vlm_rationality.data.shards import iter_batches
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.io import read_metadata
from vlm_rationality.metrics.rma import relevance_mass_accuracy
from vlm_rationality.models import build_classifier, build_model


def write_shards(root: Path, images: int, size: int, classes: int, shard_size: int, seed: int = 0) -> list[str]:
    """Random uint8 images with one random box mask each, in prepared shards of `shard_size`."""
    rng = np.random.default_rng(seed)
    paths = []
    for first in range(0, images, shard_size):
        n = min(shard_size, images - first)
        masks = np.zeros((n, size, size), bool)
        for mask in masks:
            x0, y0 = rng.integers(0, size // 2, 2)
            x1, y1 = x0 + rng.integers(size // 4, size // 2 + 1, 2)
            mask[y0:y1, x0:x1] = True
        path = root / f"shard-{len(paths):04d}.parquet"
        write_prepared_shard(
            path,
            sample_ids=[f"s{first + i}" for i in range(n)],
            labels=rng.integers(0, classes, n),
            images=rng.integers(0, 256, (n, size, size, 3), np.uint8),
            masks=masks,
            sources=["random"] * n,
            config_hash="benchmark",
        )
        paths.append(str(path))
    return paths


class Stopwatch:
    """Seconds per named step; the device is synchronised at both ends of each, so queued work is counted where
    it runs."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        sync(self.device)
        start = time.perf_counter()
        yield
        sync(self.device)
        self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B-16" if cuda else "ViT-S-16", help="an open_clip architecture")
    device_arguments(parser, images=(10_240, 256), batch_size=(256, 32))
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--shift", default="clean", help="clean or an ImageNet-C corruption-severity, e.g. zoom_blur-3")
    parser.add_argument("--workers", type=int, default=0, help="corruption processes of the job (heatmaps.workers)")
    parser.add_argument("--method", default="chefer", help="heatmap method")
    parser.add_argument(
        "--auto-batch", action="store_true", help="heatmaps.batch_size auto: the batch the GPU's memory holds"
    )
    args = parser.parse_args()
    device = setup(args)
    model = build_model({"adapter": "open_clip", "arch": args.arch}).to(device).eval()
    size = model.preprocess.image_size
    start = time.perf_counter()
    classifier = build_classifier(model, "prompt", [f"a photo of a class {i}" for i in range(args.classes)])
    text_s = time.perf_counter() - start
    settings = HeatmapSettings(
        method=args.method, batch_size="auto" if args.auto_batch else args.batch_size, amp=args.amp
    )
    with tempfile.TemporaryDirectory(prefix="explain-job-") as tmp:
        shards = write_shards(Path(tmp), args.images, size, args.classes, args.shard_size)
        keys = {"dataset": "benchmark", "shift": args.shift, "model": args.arch, "method": "zs"}
        explain_shards(
            classifier, shards[:1], Path(tmp) / "warm.parquet", settings, "benchmark", device, keys, args.workers
        )  # kernels, the allocator, the corruption's lazy imports
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        watch = Stopwatch(device)
        with watch("end to end"):
            summary = explain_shards(
                classifier, shards, Path(tmp) / "heatmaps.parquet", settings, "benchmark", device, keys, args.workers
            )
        peak = peak_mib(device)
        batch_size = read_metadata(Path(tmp) / "heatmaps.parquet")["batch_size"]
        explain = settings.build()
        batches = iter(iter_batches(shards, batch_size))
        while True:  # the job's steps again, each timed alone
            with watch("read + decode"):
                batch = next(batches, None)
            if batch is None:
                break
            if args.shift != "clean":
                with watch("corruption"):
                    batch.images = torch.from_numpy(apply_shift(batch.images.numpy(), batch.sample_ids, args.shift))
            with watch("host -> device"):
                batch = batch.to(device)
            with watch("forward + backward + rollout"):
                result = explain(classifier, classifier.model.preprocess(batch.images), batch.labels)
            with watch("RMA"):
                relevance_mass_accuracy(result.relevance, batch.masks())

    total, model_s = watch.seconds["end to end"], watch.seconds["forward + backward + rollout"]
    print(f"device             {device_name(device)}")
    print(
        f"job                {args.arch} @ {size}px, {args.classes} classes, {args.method}, amp={args.amp}, "
        f"shift {args.shift} ({args.workers} corruption workers), batch {batch_size}{' (auto)' * args.auto_batch}, "
        f"{summary['n']} images"
    )
    print(f"text features      {text_s:10.2f} s  (once per job)")
    print(f"end to end         {summary['n'] / total:10.1f} img/s")
    print(f"model alone        {summary['n'] / model_s:10.1f} img/s")
    print(f"device waits       {100 * max(0.0, 1 - model_s / total):10.1f} % of the job")
    print(f"peak memory        {peak:10.0f} MiB  ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})")
    steps = {step: seconds for step, seconds in watch.seconds.items() if step != "end to end"}
    rest = total - sum(steps.values())
    steps["write + overhead" if rest >= 0 else "overlapped (read and corrupted ahead)"] = abs(rest)
    print("time split (each step timed alone and in line over the same shards, % of end to end)")
    for step, seconds in steps.items():
        print(f"  {step:38s} {seconds:8.2f} s  {100 * seconds / total:5.1f} %")


if __name__ == "__main__":
    main()
