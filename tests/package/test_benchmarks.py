"""The benchmark scripts run, small, on CPU and print their figures (the figures themselves are never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # each test starts a benchmark script in its own process


def run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("shift, workers, batch", [("clean", "0", "auto"), ("gaussian_noise-3", "2", "16")])
def test_the_explain_job_benchmark_times_the_real_job_and_splits_it(shift, workers, batch):
    size = ["--auto-batch"] if batch == "auto" else ["--batch-size", batch]
    out = run(
        "explain_job.py",
        "--arch",
        "tiny-vit-32",
        "--images",
        "48",
        "--classes",
        "5",
        *size,
        "--shard-size",
        "20",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--shift",
        shift,
        "--workers",
        workers,
    )
    assert "48 images" in out and f"shift {shift}" in out
    assert ("batch 64 (auto)," if batch == "auto" else "batch 16,") in out  # auto is 64 images on CPU
    rates = {name: float(value) for name, value in re.findall(r"^(end to end|model alone)\s+([\d.]+) img/s", out, re.M)}
    assert set(rates) == {"end to end", "model alone"} and all(rate > 0 for rate in rates.values())
    steps = re.findall(r"^  (.+?)\s+[\d.]+ s\s+[\d.]+ %$", out, re.M)
    expected = ["read + decode", "host -> device", "forward + backward + rollout", "RMA"]
    if shift != "clean":
        expected.insert(1, "corruption")
    assert steps[:-1] == expected and steps[-1] in ("write + overhead", "overlapped (read and corrupted ahead)")


def test_the_heatmap_benchmark_compares_the_loop_and_the_batched_rollout():
    out = run(
        "heatmaps.py",
        "--arch",
        "tiny-vit-32",
        "--images",
        "8",
        "--per-sample-images",
        "4",
        "--classes",
        "4",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--device",
        "cpu",
    )
    assert re.search(r"^speed-up\s+[\d.]+x$", out, re.M)
    assert float(re.search(r"^max rel\. diff\s+([\d.e+-]+)", out, re.M).group(1)) < 1e-4


def test_the_finetune_benchmark_runs_the_job_held_and_streamed():
    out = run(
        "finetune_job.py",
        "--arch",
        "tiny-vit-32",
        "--images",
        "96",
        "--classes",
        "4",
        "--batch-size",
        "16",
        "--shard-size",
        "32",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--window",
        "2",
    )
    rows = re.findall(r"^(ft|flcp)\s+(in memory|streamed)\s+([\d.]+)\s", out, re.M)
    assert [(kind, mode) for kind, mode, _ in rows] == [
        ("ft", "in memory"),
        ("ft", "streamed"),
        ("flcp", "in memory"),
        ("flcp", "streamed"),
    ]
    assert all(float(rate) > 0 for *_, rate in rows)
    assert re.search(r"^streamed / in memory  flcp: [\d.]+x$", out, re.M)


def test_the_amp_agreement_benchmark_compares_bf16_with_fp32():
    out = run(
        "amp_agreement.py",
        "--amp",
        "bf16",
        "--arch",
        "tiny-vit-32",
        "--images",
        "32",
        "--classes",
        "4",
        "--threads",
        "1",
        "--device",
        "cpu",
    )
    agreement = float(re.search(r"^validity agrees\s+([\d.]+) %", out, re.M).group(1))
    defined = int(re.search(r"^samples\s+32 \((\d+) with RMA defined in both\)", out, re.M).group(1))
    largest = float(re.search(r"^max \|RMA diff\|\s+([\d.]+)", out, re.M).group(1))
    flips = re.search(r"^flipped samples\s+(\d+), fp32 RMA within ([\d.]+) of the threshold", out, re.M)
    flipped = int(flips.group(1)) if flips else 0
    # the agreement counts exactly the flips it lists, and only a sample nearer the threshold than bf16 moved an RMA
    # can flip
    assert defined > 0 and agreement == round(100 * (1 - flipped / defined), 2)
    assert not flips or float(flips.group(2)) <= largest + 1e-4
    assert re.search(r"^PT / IR bf16\s+(?:[\d.]+|nan) / (?:[\d.]+|nan)$", out, re.M)  # nan: no right or no valid one
