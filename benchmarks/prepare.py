"""Prepare throughput on realistic JPEGs, and the time of one corruption pass per ImageNet-C type.

Writes a miniature ImageNet (synset folders + LOC_val_solution.csv) of ~500×375 JPEGs into a temp folder,
prepares it at 224 px in `--workers` shard jobs side by side (as Snakemake runs them), and then times each
corruption at severity 3 over the prepared images.

    python benchmarks/prepare.py --images 400 --workers 2
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.data.corruptions import CORRUPTIONS, apply_shift
from vlm_rationality.data.prepare import prepare_shard, write_item_index


def make_imagenet(root: Path, images: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = ["ImageId,PredictionString"]
    for i in range(images):
        synset = f"n{i % 10:08d}"
        width, height = (500, 375) if i % 3 else (375, 500)
        pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        pixels = (pixels // 32 * 32).astype(np.uint8)  # some structure, so the JPEG is not pure noise
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x1, y1 = x0 + width // 3, y0 + height // 3
        pixels[y0:y1, x0:x1] = (230, 200, 40)
        path = root / "val" / synset / f"ILSVRC2012_val_{i:08d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        rows.append(f"ILSVRC2012_val_{i:08d},{synset} {x0} {y0} {x1} {y1}")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--corruption-images", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imagenet"
        make_imagenet(root, args.images)
        shard_size = math.ceil(args.images / args.workers)
        config = {
            "adapter": "imagenet",
            "root": str(root),
            "image_size": 224,
            "shard_size": shard_size,
            "splits": {"val": {}},
        }
        outs = [Path(tmp) / f"shard-{k:04d}.parquet" for k in range(args.workers)]
        index = Path(tmp) / "items.parquet"
        start = time.perf_counter()
        write_item_index(config, "val", index, "bench")
        with ProcessPoolExecutor(args.workers) as pool:
            counts = list(
                pool.map(
                    prepare_shard,
                    [config] * args.workers,
                    ["val"] * args.workers,
                    range(args.workers),
                    [index] * args.workers,
                    outs,
                    ["bench"] * args.workers,
                )
            )
        seconds = time.perf_counter() - start
        written = sum(c["written"] for c in counts)
        print(
            f"prepare: {written} JPEGs (~500x375) -> 224 px in {seconds:.1f} s with {args.workers} shard jobs: "
            f"{written / seconds:.1f} img/s"
        )

        images = PreparedShard(outs[0]).read()
        batch, ids = images["image"][: args.corruption_images], images["sample_id"][: args.corruption_images]
        apply_shift(batch[:1], ids[:1], "glass_blur-1")  # numba compiles glass_blur on its first call
        print(f"one corruption pass (severity 3) over {len(batch)} prepared 224 px images, 1 process:")
        for name in CORRUPTIONS:
            start = time.perf_counter()
            apply_shift(batch, ids, f"{name}-3")
            seconds = time.perf_counter() - start
            print(f"  {name:18s} {seconds:7.2f} s  ({len(batch) / seconds:8.1f} img/s)")


if __name__ == "__main__":
    main()
