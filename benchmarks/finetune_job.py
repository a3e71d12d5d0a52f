"""Fine-tuning throughput: the real fine-tune job, its split held in memory and streamed, side by side.

Writes prepared shards of `--images` random images at the model's input size, then runs the job's own function
(`finetune.run.finetune`: load the split, AdamW steps of every `--methods` kind, save the checkpoint) once with the
split held in memory and once streamed from the shards (`training_data.in_memory_mb: 0`), and prints images/s of
each (training images / the job's seconds), the streamed / in-memory ratio, and peak memory (the host's resident
memory, and the GPU's on CUDA). Random weights: the figures measure throughput, not accuracy.

    python benchmarks/finetune_job.py --amp bf16                              # CUDA: ViT-B-16 at 224, 20,480 images
    python benchmarks/finetune_job.py --arch tiny-vit-64 --images 2048 --classes 8   # on CPU
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _device import device_arguments, device_name, host_peak_mib, peak_mib, reset_peak, setup
from explain_job import write_shards

from vlm_rationality.finetune.run import finetune
from vlm_rationality.models import build_model

MODES = {"in memory": None, "streamed": 0}  # training_data.in_memory_mb


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B-16" if cuda else "tiny-vit-64", help="an open_clip architecture")
    device_arguments(parser, images=(20_480, 1024), batch_size=(256, 64))
    parser.add_argument("--methods", nargs="+", default=["ft", "flcp"], help="fine-tuning kinds")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--window", type=int, default=8, help="training_data.window when streamed")
    args = parser.parse_args()
    if args.amp == "fp16":
        parser.error("training takes --amp none or bf16")
    device = setup(args)
    model_spec = {"adapter": "open_clip", "arch": args.arch}
    size = build_model(model_spec).preprocess.image_size
    prompts = [f"a photo of a class {i}" for i in range(args.classes)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="finetune-job-") as tmp:
        shards = write_shards(Path(tmp), args.images, size, args.classes, args.shard_size)
        for kind in args.methods:
            method = {
                "kind": kind,
                "optimizer": "adamw",
                "lr": 1e-5,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "weight_decay": 0.1,
                "seed": 0,
                "amp": args.amp,
            }
            finetune(
                model_spec, method, prompts, shards[:1], str(Path(tmp) / "warm.safetensors"), args.device
            )  # kernels
            for mode, in_memory_mb in MODES.items():
                training_data = None if in_memory_mb is None else {"in_memory_mb": in_memory_mb, "window": args.window}
                reset_peak(device)
                sidecar = finetune(
                    model_spec,
                    method,
                    prompts,
                    shards,
                    str(Path(tmp) / f"{kind}.safetensors"),
                    args.device,
                    training_data,
                )
                assert sidecar["streamed"] == (in_memory_mb is not None)
                rows.append(
                    (
                        kind,
                        mode,
                        args.epochs * args.images / sidecar["seconds"],
                        sidecar["seconds"],
                        host_peak_mib(),
                        peak_mib(device) if device.type == "cuda" else float("nan"),
                    )
                )

    print(f"device             {device_name(device)}")
    print(
        f"job                {args.arch} @ {size}px, {args.classes} classes, AdamW, amp={args.amp}, batch "
        f"{args.batch_size}, {args.images} images x {args.epochs} epoch(s), shards of {args.shard_size}, "
        f"window {args.window}"
    )
    print(f"{'method':8s} {'split':10s} {'img/s':>10s} {'seconds':>9s} {'host peak MiB':>14s} {'GPU peak MiB':>13s}")
    for kind, mode, rate, seconds, host, gpu in rows:
        print(f"{kind:8s} {mode:10s} {rate:10.1f} {seconds:9.2f} {host:14.0f} {gpu:13.0f}")
    for kind in args.methods:
        held, streamed = (rate for k, _, rate, *_ in rows if k == kind)
        print(f"streamed / in memory  {kind}: {streamed / held:.2f}x")


if __name__ == "__main__":
    main()
