"""Heatmap throughput: the per-sample loop (the original recipe) against the batched rollout, side by side.

Prints images/s of both paths on the same device, model and images, their ratio, the largest relative
difference between their maps, and peak memory. Random weights: the figures measure compute, not accuracy.

    python benchmarks/heatmaps.py                       # CUDA: ViT-B-16 at 224; CPU: ViT-S-16 at 224
    python benchmarks/heatmaps.py --arch ViT-B-16 --amp bf16 --batch-size 128 --images 1024
    python benchmarks/heatmaps.py --adapter albef        # ALBEF-ViT-B-16 (BLIP: --adapter blip)
    python benchmarks/heatmaps.py --compile              # also the batched path with torch.compile, side by side

ALBEF/BLIP need a WordPiece vocabulary; without --tokenizer a placeholder of bert-base-uncased's size is used
(the weights are random, so the words do not matter).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _device import device_arguments, device_name, peak_mib, setup, sync

from vlm_rationality.device import AMP_DTYPES
from vlm_rationality.explain.chefer import Chefer, chefer_relevance_per_sample
from vlm_rationality.models import MODEL_ADAPTERS, build_classifier, build_model

DEFAULT_ARCH = {"albef": "ALBEF-ViT-B-16", "blip": "BLIP-ViT-B-16"}


def _placeholder_vocab(size: int = 30_522) -> str:
    directory = Path(tempfile.mkdtemp(prefix="vocab-"))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "class"] + [str(i) for i in range(1000)]
    tokens += [f"[unused{i}]" for i in range(size - len(tokens))]
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return str(directory)


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default="open_clip", choices=list(MODEL_ADAPTERS))
    parser.add_argument("--arch", help="default: ViT-B-16 on CUDA, ViT-S-16 on CPU; ALBEF-/BLIP-ViT-B-16")
    parser.add_argument("--tokenizer", help="albef/blip: a bert-base-uncased directory (default: a placeholder)")
    device_arguments(parser, images=(1024, 64), batch_size=(128, 32))  # images: for the batched path
    parser.add_argument("--per-sample-images", type=int, default=32 if cuda else 16)
    parser.add_argument("--compile", action="store_true", help="also time the batched path with heatmaps.compile")
    args = parser.parse_args()
    device = setup(args)
    args.arch = args.arch or DEFAULT_ARCH.get(args.adapter, "ViT-B-16" if cuda else "ViT-S-16")
    spec = {"adapter": args.adapter, "arch": args.arch}
    if args.adapter != "open_clip":
        spec["tokenizer"] = args.tokenizer or _placeholder_vocab()
    model = build_model(spec).to(device).eval()
    parameters = sum(p.numel() for p in model.parameters())
    image_parameters = sum(p.numel() for p in model.image_parameters())
    classifier = build_classifier(model, "prompt", [f"a photo of a class {i}" for i in range(args.classes)])
    size = model.preprocess.image_size
    images = torch.randn(args.images, 3, size, size, device=device)
    labels = torch.randint(0, args.classes, (args.images,), device=device)
    amp = AMP_DTYPES[args.amp]
    chefer = Chefer(amp_dtype=amp)

    def batched(n: int, explain: Chefer = chefer) -> torch.Tensor:
        maps = [
            explain(classifier, images[i : i + args.batch_size], labels[i : i + args.batch_size]).relevance
            for i in range(0, n, args.batch_size)
        ]
        return torch.cat(maps)

    # Warm-up (kernel selection, allocator), then time each path on its own images.
    batched(min(args.batch_size, args.images))
    chefer_relevance_per_sample(classifier, images[:2], labels[:2])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    batched_maps = batched(args.images)
    sync(device)
    batched_s = time.perf_counter() - start
    peak_batched = peak_mib(device)

    if args.compile:  # compiled once (the warm-up), then timed on the same images
        compiled = Chefer(amp_dtype=amp, compiled=True)
        start = time.perf_counter()
        batched(min(args.batch_size, args.images), compiled)
        compile_s = time.perf_counter() - start
        sync(device)
        start = time.perf_counter()
        compiled_maps = batched(args.images, compiled)
        sync(device)
        compiled_s = time.perf_counter() - start
        compiled_diff = float((compiled_maps - batched_maps).abs().max() / batched_maps.abs().max())

    n_loop = min(args.per_sample_images, args.images)
    start = time.perf_counter()
    loop_maps = chefer_relevance_per_sample(classifier, images[:n_loop], labels[:n_loop]).relevance
    sync(device)
    loop_s = time.perf_counter() - start

    exact = Chefer()(classifier, images[:n_loop], labels[:n_loop]).relevance  # fp32 batched
    rel_diff = float((exact - loop_maps).abs().max() / loop_maps.abs().max())
    amp_diff = float((batched_maps[:n_loop].float() - loop_maps).abs().max() / loop_maps.abs().max())
    batched_ips, loop_ips = args.images / batched_s, n_loop / loop_s
    print(f"device            {device_name(device)}")
    print(
        f"model             {args.adapter} {args.arch} @ {size}px, {args.classes} classes, random weights, "
        f"amp={args.amp}"
    )
    print(f"parameters        {parameters:,} (image tower + projection {image_parameters:,})")
    print(f"per-sample loop   {loop_ips:10.1f} img/s  ({n_loop} images)")
    print(f"batched           {batched_ips:10.1f} img/s  ({args.images} images, batch {args.batch_size})")
    print(f"speed-up          {batched_ips / loop_ips:10.1f}x")
    print(f"max rel. diff     {rel_diff:10.2e}  (fp32 batched vs loop)")
    if amp is not None:
        print(f"max rel. diff     {amp_diff:10.2e}  ({args.amp} batched vs fp32 loop)")
    if args.compile:
        print(
            f"compiled          {args.images / compiled_s:10.1f} img/s  "
            f"({compile_s:.1f} s to compile and run one batch)"
        )
        print(f"compiled / eager  {batched_s / compiled_s:10.2f}x")
        print(f"max rel. diff     {compiled_diff:10.2e}  (compiled vs eager batched)")
    print(
        f"peak memory       {peak_batched:10.0f} MiB  ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})"
    )


if __name__ == "__main__":
    main()
