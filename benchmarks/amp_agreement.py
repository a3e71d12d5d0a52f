"""Mixed-precision heatmaps against fp32: does bf16 (or fp16) change which samples have valid evidence?

Runs the real explain job (`explain_shards`) twice over the same prepared shards, in fp32 and under `--amp`, and
prints the share of samples whose RMA validity (RMA ≥ `--threshold`) agrees, the share whose prediction agrees,
the largest RMA difference, and PT / IR of both runs. Give a fine-tuned checkpoint the workflow wrote (its sidecar
names the model and prompts) and its dataset's prepared shards to measure a real model; without them, a random
model on random images (a smoke test: its figures mean little).

    python benchmarks/amp_agreement.py --amp bf16 \\
        --checkpoint results/checkpoints/synthetic-rho0.9/tiny-clip/ft.safetensors \\
        results/data/synthetic-rho0.9/test/shard-*.parquet
    python benchmarks/amp_agreement.py --amp bf16 --arch tiny-vit-32 --images 64 --classes 5   # smoke test
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _device import device_arguments, device_name, setup
from explain_job import write_shards

from vlm_rationality.artefacts import read_heatmaps
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.metrics.rationality import category_counts, metrics_from_counts
from vlm_rationality.models import build_classifier, build_model
from vlm_rationality.models.checkpoint import method_classifier
from vlm_rationality.models.classifier_spec import read_sidecar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shards", nargs="*", help="prepared shards (default: random images)")
    parser.add_argument(
        "--checkpoint", help="a fine-tuned classifier from results/checkpoints (default: random weights)"
    )
    parser.add_argument("--arch", default="tiny-vit-32", help="without --checkpoint: an open_clip architecture")
    device_arguments(parser, images=(1024, 64), batch_size=(256, 64))
    parser.add_argument("--method", default="chefer", help="heatmap method")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    if args.amp == "none":
        parser.error("--amp bf16 or fp16: the precision compared with fp32")
    device = setup(args)
    with tempfile.TemporaryDirectory(prefix="amp-agreement-") as tmp:
        if args.checkpoint:
            sidecar = read_sidecar(args.checkpoint)
            classifier = method_classifier(sidecar["model"], sidecar["prompts"], args.checkpoint)
            what = f"{args.checkpoint} ({sidecar['model']['arch']}, {sidecar['method']['kind']})"
        else:
            model = build_model({"adapter": "open_clip", "arch": args.arch})
            classifier = build_classifier(model, "prompt", [f"a photo of a class {i}" for i in range(args.classes)])
            what = f"{args.arch}, random weights"
        shards = args.shards or write_shards(
            Path(tmp), args.images, classifier.model.preprocess.image_size, args.classes, 1000
        )
        runs = {}
        for amp in ("none", args.amp):
            out = Path(tmp) / f"{amp}.parquet"
            explain_shards(
                classifier,
                shards,
                out,
                HeatmapSettings(args.method, batch_size=args.batch_size, amp=amp),
                "benchmark",
                device,
            )
            _, table = read_heatmaps(out, ["label", "pred", "rma", "rma_status"])
            runs[amp] = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    exact, mixed = runs["none"], runs[args.amp]
    defined = (exact["rma_status"] == "ok") & (mixed["rma_status"] == "ok")
    valid = [run["rma"][defined] >= args.threshold for run in (exact, mixed)]
    print(f"device             {device_name(device)}")
    print(f"model              {what}; {args.method}, threshold {args.threshold}, batch {args.batch_size}")
    print(f"samples            {len(defined)} ({int(defined.sum())} with RMA defined in both)")
    print(f"validity agrees    {100 * float(np.mean(valid[0] == valid[1])):10.2f} %  ({args.amp} vs fp32)")
    print(f"prediction agrees  {100 * float(np.mean(exact['pred'] == mixed['pred'])):10.2f} %")
    print(f"max |RMA diff|     {float(np.abs(exact['rma'][defined] - mixed['rma'][defined]).max()):10.4f}")
    flipped = np.abs(exact["rma"][defined][valid[0] != valid[1]] - args.threshold)
    if len(flipped):
        print(f"flipped samples    {len(flipped)}, fp32 RMA within {float(flipped.max()):.4f} of the threshold")
    for name, run in (("fp32", exact), (args.amp, mixed)):
        counts = category_counts(run["pred"][defined] == run["label"][defined], run["rma"][defined], args.threshold)
        metrics = metrics_from_counts(counts)
        print(
            f"PT / IR {name:10s} {float(metrics['prediction_trustworthiness']):.4f} / "
            f"{float(metrics['inference_reliability']):.4f}"
        )


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
