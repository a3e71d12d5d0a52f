"""Data-parallel fine-tuning under torchrun (gloo, 2 CPU processes) gives the one-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.snakemake_runs import TEST_CONFIG
from vlm_rationality.models import build_model
from vlm_rationality.models.checkpoint import load_state_dict
from vlm_rationality.models.classifier_spec import read_sidecar
from vlm_rationality.plan import specs

MODEL = {"adapter": "open_clip", "arch": "tiny-vit-32"}  # random weights: every process builds the same seeded model


def _cli(*args: str, processes: int = 1) -> None:
    """The CLI as the workflow calls it: with `--processes K`, it starts torchrun with K ranks itself."""
    command = [
        sys.executable,
        "-m",
        "vlm_rationality",
        *args,
        *(["--processes", str(processes)] if processes > 1 else []),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> Path:
    config = json.loads(json.dumps(TEST_CONFIG))
    config["datasets"]["tiny-synthetic"]["splits"]["train"]["size"] = 50  # batches of 16, 16, 16 and 2
    config["datasets"]["tiny-synthetic"]["shard_size"] = 50
    out = tmp_path_factory.mktemp("ddp") / "train.parquet"
    spec = specs.prepare_spec(config, "tiny-synthetic", "train")
    index = out.with_name("items.parquet")
    _cli("items", "--spec", json.dumps(spec), "--split", "train", "--out", str(index))
    _cli(
        "prepare",
        "--spec",
        json.dumps(spec),
        "--split",
        "train",
        "--shard",
        "0",
        "--items",
        str(index),
        "--out",
        str(out),
    )
    return out


# SGD for the backbone methods: Adam divides by sqrt(v), which turns float-level differences of near-zero
# gradients into lr-sized steps, so it would test rounding rather than the summed gradient.
@pytest.mark.parametrize(
    "method",
    [
        {
            "kind": "ft",
            "optimizer": "sgd",
            "lr": 1e-2,
            "epochs": 2,
            "batch_size": 16,
            "weight_decay": 0.1,
            "seed": 0,
            "head_init": "prompts",
        },
        {
            "kind": "flcp",
            "optimizer": "sgd",
            "lr": 1e-2,
            "epochs": 2,
            "batch_size": 16,
            "weight_decay": 0.1,
            "seed": 0,
        },  # global negatives
        {"kind": "lp", "lr": 1e-2, "epochs": 2, "batch_size": 16, "seed": 0},
    ],
    ids=lambda m: m["kind"],
)
def test_two_gloo_processes_train_what_one_process_trains(shard, tmp_path, method):
    prompts = specs.prompts(TEST_CONFIG, "tiny-synthetic")
    common = [
        "finetune",
        "--model",
        json.dumps(MODEL),
        "--method",
        json.dumps(method),
        "--prompts",
        json.dumps(prompts),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    _cli(*common, "--out", str(tmp_path / "one.safetensors"), str(shard))
    _cli(*common, "--out", str(tmp_path / "two.safetensors"), str(shard), processes=2)
    one, two = load_state_dict(tmp_path / "one.safetensors"), load_state_dict(tmp_path / "two.safetensors")
    assert one.keys() == two.keys()
    difference = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert difference < 1e-5, f"largest weight difference between 1 and 2 processes: {difference}"
    if method["kind"] != "lp":  # the comparison means something only if training moved the weights
        initial = build_model(MODEL).backbone_state_dict()
        assert max(float((one[f"model.{k}"] - v).abs().max()) for k, v in initial.items()) > 1000 * difference
    first, second = read_sidecar(tmp_path / "one.safetensors"), read_sidecar(tmp_path / "two.safetensors")
    assert (first["processes"], second["processes"]) == (1, 2)
    assert second["metrics"]["train_loss"] == pytest.approx(first["metrics"]["train_loss"], rel=1e-5)
    assert second["metrics"]["train_accuracy"] == first["metrics"]["train_accuracy"]


def test_two_gloo_processes_train_on_a_streamed_split(tmp_path):
    """Streamed, each rank reads its own shards' rows; every rank must still walk the same global batches, or the
    all-gather of their shares would not line up."""
    config = json.loads(json.dumps(TEST_CONFIG))
    config["datasets"]["tiny-synthetic"]["splits"]["train"]["size"] = 50
    config["datasets"]["tiny-synthetic"]["shard_size"] = 20  # three shards: 20, 20 and 10 rows
    spec = specs.prepare_spec(config, "tiny-synthetic", "train")
    index = tmp_path / "items.parquet"
    _cli("items", "--spec", json.dumps(spec), "--split", "train", "--out", str(index))
    shards = [str(tmp_path / f"train-{s}.parquet") for s in range(3)]
    for s, out in enumerate(shards):
        _cli(
            "prepare",
            "--spec",
            json.dumps(spec),
            "--split",
            "train",
            "--shard",
            str(s),
            "--items",
            str(index),
            "--out",
            out,
        )
    method = {"kind": "ft", "lr": 1e-3, "epochs": 2, "batch_size": 16, "seed": 0}
    _cli(
        "finetune",
        "--model",
        json.dumps(MODEL),
        "--method",
        json.dumps(method),
        "--prompts",
        json.dumps(specs.prompts(TEST_CONFIG, "tiny-synthetic")),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--training-data",
        json.dumps({"in_memory_mb": 0, "window": 2}),
        "--out",
        str(tmp_path / "two.safetensors"),
        *shards,
        processes=2,
    )
    sidecar = read_sidecar(tmp_path / "two.safetensors")
    assert sidecar["processes"] == 2 and sidecar["streamed"] is True
    assert sidecar["metrics"]["steps"] == 2 * 4 and 0 <= sidecar["metrics"]["train_accuracy"] <= 1
