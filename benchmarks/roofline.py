"""Roofline of the default run on this machine: what each model stage achieves against what its matrices allow.

Three figures per stage, side by side:
- **achieved GFLOP/s**: the model FLOPs of the stage's real job in a finished default run (`results/`): FLOPs per
  image counted with `torch.utils.flop_counter` on the job's own function (one epoch over the first prepared
  shard; the whole job for a method that embeds its split once and trains a head, LP), times the images the job
  pushed (split size × epochs), over the job's wall seconds in `results/benchmarks/` (start-up and data loading
  included: what a user waits for);
- **matmul GFLOP/s**: the sustained rate of the stage's own matrix shapes (every linear layer of the model at the
  stage's batch, attention's batched products), a FLOP-weighted mean, measured here in the same process;
- the **fraction** of the second the first reaches.
A square 1024³ matmul gives the machine's peak for reference. Forward plus backward is counted where a stage
trains or explains (a chefer map needs both); the optimizer's own arithmetic is not (a few FLOPs a parameter).

    snakemake --cores 2 && python benchmarks/roofline.py --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from vlm_rationality import open_clip_data
from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.finetune.run import finetune, pretrain_base
from vlm_rationality.models import build_classifier, build_model
from vlm_rationality.plan.specs import stage_threads
from vlm_rationality.registry import declared


def matmul_rate(m: int, k: int, n: int, batch: int = 1, seconds: float = 0.4) -> float:
    """GFLOP/s of (batch × m × k) @ (k × n), float32, repeated for about `seconds`."""
    a, b = torch.randn(batch, m, k), torch.randn(batch, k, n)
    torch.bmm(a, b)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.bmm(a, b)
        runs += 1
    return 2 * batch * m * k * n * runs / (time.perf_counter() - start) / 1e9


def model_shapes(arch: str, batch: int) -> list[tuple[int, int, int, int]]:
    """(batch, m, k, n) of one forward of the image tower at `batch`: its linear layers and attention products."""
    vision = open_clip_data.model_config(arch)["vision_cfg"]
    width, heads = vision["width"], vision["width"] // vision.get("head_width", 64)
    tokens = (vision["image_size"] // vision["patch_size"]) ** 2 + 1
    hidden = int(width * vision.get("mlp_ratio", 4.0))
    rows = batch * tokens
    return [
        (1, rows, width, 3 * width),
        (1, rows, width, width),
        (1, rows, width, hidden),
        (1, rows, hidden, width),
        (batch * heads, tokens, width // heads, tokens),
        (batch * heads, tokens, tokens, width // heads),
    ]


def shapes_rate(arch: str, batch: int) -> float:
    """The FLOP-weighted mean rate of a stage's shapes: total FLOPs over the summed time each takes."""
    shapes = model_shapes(arch, batch)
    flops = [2 * b * m * k * n for b, m, k, n in shapes]
    return sum(flops) / sum(f / matmul_rate(m, k, n, b) for f, (b, m, k, n) in zip(flops, shapes))


def counted(run) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def job_seconds(results: Path, *parts: str) -> float:
    """Wall seconds of one job from its Snakemake benchmark file."""
    lines = (results / "benchmarks" / Path(*parts)).read_text().splitlines()
    return float(lines[1].split("\t")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml", help="the config the run in --results used")
    parser.add_argument("--results", default="results", help="a finished run of --config")
    parser.add_argument("--dataset", default="synthetic-rho0.9")
    parser.add_argument("--threads", type=int, default=2, help="threads of the FLOP-counting runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, results = yaml.safe_load(Path(args.config).read_text()), Path(args.results)
    model_name, model = next(iter(config["models"].items()))
    dataset = config["datasets"][args.dataset]
    pretrain, arch = model["pretrain"], model["arch"]
    spec = {"adapter": model["adapter"], "arch": arch}
    base = {**spec, "pretrained": str(results / "models" / model_name / "base.safetensors")}
    data = results / "data"
    prompts = [f"a photo of a class {i}" for i in range(dataset["num_classes"])]
    first = lambda split, name=args.dataset: [str(data / name / split / "shard-0000.parquet")]  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory(prefix="roofline-") as tmp:
        source = first(pretrain["split"], pretrain["dataset"])
        flops = counted(
            lambda: pretrain_base(spec, {**pretrain, "epochs": 1}, source, f"{tmp}/base.safetensors", "cpu")
        )
        images = dataset["splits"][pretrain["split"]]["size"] * pretrain["epochs"]
        rows.append(
            (
                "pretrain",
                flops / PreparedShard(source[0]).rows,
                images,
                job_seconds(results, "pretrain_base", f"{model_name}.tsv"),
                pretrain["batch_size"],
                config["threads"],
            )
        )
        for name, method in config["methods"].items():
            facts = declared("vlm_rationality.finetune", "FINETUNE_METHODS")[method["kind"]]
            if not facts["trains"]:
                continue
            images = dataset["splits"][config["train_split"]]["size"] * method["epochs"]
            if facts.get("frozen_features"):  # embeds the split once, then trains a head: the whole job is counted
                shards = [str(p) for p in sorted((data / args.dataset / config["train_split"]).glob("shard-*.parquet"))]
                flops = counted(lambda: finetune(base, method, prompts, shards, f"{tmp}/{name}.safetensors", "cpu"))
                per_image = flops / images
            else:
                shards = first(config["train_split"])
                flops = counted(
                    lambda: finetune(base, {**method, "epochs": 1}, prompts, shards, f"{tmp}/{name}.safetensors", "cpu")
                )
                per_image = flops / PreparedShard(shards[0]).rows
            rows.append(
                (
                    f"finetune {name}",
                    per_image,
                    images,
                    job_seconds(results, "finetune", args.dataset, model_name, f"{name}.tsv"),
                    method["batch_size"],
                    stage_threads(config, "finetune", name),
                )
            )
        classifier = build_classifier(build_model(base).eval(), "prompt", prompts)
        heatmaps = config["heatmaps"]
        settings = HeatmapSettings(batch_size=heatmaps["batch_size"], method=heatmaps["methods"][0])
        shards = first(config["eval_split"])
        flops = counted(lambda: explain_shards(classifier, shards, f"{tmp}/heatmaps.parquet", settings, "roofline"))
        explain_files = sorted(
            (results / "benchmarks" / "explain" / args.dataset / "clean" / model_name / "ft").rglob("*.tsv")
        )
        seconds = sum(float(p.read_text().splitlines()[1].split("\t")[0]) for p in explain_files)
        rows.append(
            (
                f"explain {settings.method} (FT)",
                flops / PreparedShard(shards[0]).rows,
                dataset["splits"][config["eval_split"]]["size"],
                seconds,
                heatmaps["batch_size"],
                heatmaps.get("threads", config["threads"]),
            )
        )
    peaks = {}
    for threads in sorted({row[-1] for row in rows}):
        torch.set_num_threads(threads)
        peaks[threads] = matmul_rate(1024, 1024, 1024, seconds=1.0)
    print(
        f"{arch} at {dataset['image_size']} px; square 1024³ float32 matmul: "
        + ", ".join(f"{rate:.1f} GFLOP/s on {threads} thread(s)" for threads, rate in peaks.items())
        + "\n"
    )
    print(
        "| stage | GFLOP per image | images | job seconds | images/s | achieved GFLOP/s | its shapes' matmul GFLOP/s "
        "(batch, threads) | achieved / shapes | achieved / 1024³ |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for stage, per_image, images, seconds, batch, threads in rows:
        torch.set_num_threads(threads)  # the job's own thread count
        achieved, shapes = per_image * images / seconds / 1e9, shapes_rate(arch, batch)
        print(
            f"| {stage} | {per_image / 1e9:.4f} | {images:,} | {seconds:.1f} | {images / seconds:.0f} | "
            f"{achieved:.2f} | {shapes:.1f} ({batch}, {threads}) | {achieved / shapes:.1%} | "
            f"{achieved / peaks[threads]:.1%} |"
        )


if __name__ == "__main__":
    main()
