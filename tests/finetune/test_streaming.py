"""Training splits streamed from their shards: the same images as in memory, a seeded epoch that covers every row
once, ranks reading their own row groups, and memory that stays flat as the split grows."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from vlm_rationality.artefacts import write_prepared_shard
from vlm_rationality.finetune.base import build_method
from vlm_rationality.finetune.data import Streaming, load_split, streamed_order
from vlm_rationality.models import build_model


def write_shards(directory, shards: int, rows: int, size: int, classes: int = 4) -> list[str]:
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for s in range(shards):
        path = directory / f"shard-{s:05d}.parquet"
        write_prepared_shard(
            path,
            sample_ids=[f"s{s}-{i}" for i in range(rows)],
            labels=rng.integers(0, classes, rows),
            images=rng.integers(0, 256, (rows, size, size, 3), dtype=np.uint8),
            masks=np.ones((rows, size, size), bool),
            sources=[""] * rows,
            config_hash="test",
        )
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_a_streamed_epoch_covers_every_row_once_and_each_rank_reads_its_own_blocks(ranks):
    sizes = [7, 5, 9, 3, 8, 6, 4, 10]
    starts = np.cumsum([0, *sizes])
    orders = [streamed_order(sizes, 3, 6, torch.Generator().manual_seed(1), rank, ranks) for rank in range(ranks)]
    batches = orders[0][0]
    for other, _ in orders[1:]:  # every rank walks the same global batches
        assert all(torch.equal(a, b) for a, b in zip(batches, other))
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(sum(sizes)))
    assert [len(b) for b in batches] == [6] * 8 + [4]
    again = streamed_order(sizes, 3, 6, torch.Generator().manual_seed(1), 0, ranks)[0]
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    other_seed = streamed_order(sizes, 3, 6, torch.Generator().manual_seed(2), 0, ranks)[0]
    assert not torch.equal(torch.cat(other_seed), rows)
    for rank, (_, held) in enumerate(orders):
        for index, blocks in zip(batches, held):
            mine = index.tensor_split(ranks)[rank].numpy()
            needed = (np.searchsorted(starts, mine, side="right") - 1).tolist()
            assert set(needed) <= set(blocks) and len(set(blocks)) == len(blocks)  # held while trained on
            assert blocks[: len(set(needed))] == list(dict.fromkeys(needed))  # what is needed now is read first
    assert max(len(blocks) for blocks in orders[0][1]) <= 9  # at most three windows of three blocks


def test_ranks_share_out_the_blocks():
    """With two ranks, every block but those balancing the epoch's end is read by one rank only."""
    sizes = [10] * 12
    starts = np.cumsum([0, *sizes])
    batches, _ = streamed_order(sizes, 4, 8, torch.Generator().manual_seed(0), 0, 2)
    readers: dict[int, set[int]] = {}
    for index in batches:
        for rank, share in enumerate(index.tensor_split(2)):
            for block in (np.searchsorted(starts, share.numpy(), side="right") - 1).tolist():
                readers.setdefault(block, set()).add(rank)
    assert len(readers) == 12 and all(len(r) == 1 for r in readers.values())


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("stream"), shards=5, rows=24, size=32)


def test_a_streamed_split_reads_the_images_it_would_hold(shards):
    held = load_split(shards)
    streamed = load_split(shards, streaming=Streaming(in_memory_mb=0, window=2))
    assert not held.streamed and streamed.streamed
    assert streamed.sample_ids == held.sample_ids and torch.equal(streamed.labels, held.labels)
    seen = []
    for index in streamed.batches(16, torch.Generator().manual_seed(0)):
        assert torch.equal(streamed.images[index], held.images[index])
        seen += index.tolist()
    assert sorted(seen) == list(range(len(held)))
    assert torch.equal(streamed.images[7], held.images[7])
    big_enough = load_split(shards, streaming=Streaming(in_memory_mb=1, window=2))  # 5·24·32·32·3 B < 1 MiB
    assert not big_enough.streamed


def test_fine_tuning_trains_on_a_streamed_split(shards, prompts):
    split = load_split(shards, streaming=Streaming(in_memory_mb=0, window=2))
    torch.manual_seed(0)
    model = build_model({"arch": "tiny-vit-32"})
    _, metrics = build_method({"kind": "ft", "lr": 1e-3, "epochs": 2, "batch_size": 16}).fit(
        model, prompts[:4], split, torch.device("cpu")
    )
    assert np.isfinite(metrics["train_loss"]) and metrics["steps"] == 2 * 8


PEAK = textwrap.dedent("""
    import json, re, sys, torch
    from vlm_rationality.finetune.data import Streaming, load_split

    def status(key):
        return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

    paths, in_memory_mb = json.loads(sys.argv[1]), float(sys.argv[2])
    open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) here, after the imports
    base = status("VmRSS")
    split = load_split(paths, streaming=Streaming(in_memory_mb=in_memory_mb, window=2))
    total = 0
    for index in split.batches(64, torch.Generator().manual_seed(0)):
        total += int(split.images[index].sum(dtype=torch.int64) > 0)
    print(json.dumps({"peak_mb": status("VmHWM") - base, "streamed": split.streamed}))
""")


# Large buffers straight from (and back to) the OS: glibc's adaptive mmap threshold and Arrow's pooled allocator
# otherwise keep freed decode buffers in their heaps, as much as 80 MB more on a loaded machine, depending on how the
# read-ahead thread's allocations interleave with the training loop's: the resident peak would then measure the
# allocators' retention, not what the split holds.
LIVE_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "131072", "ARROW_DEFAULT_MEMORY_POOL": "system"}


def peak_mb(paths: list[str], in_memory_mb: float, runs: int = 1) -> dict:
    """What loading the split and one epoch add to a fresh process's resident memory; the least of `runs`."""
    env = {**os.environ, **LIVE_MEMORY}
    outs = [
        subprocess.run(
            [sys.executable, "-c", PEAK, json.dumps(paths), str(in_memory_mb)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        for _ in range(runs)
    ]
    return min((json.loads(out.splitlines()[-1]) for out in outs), key=lambda r: r["peak_mb"])


def test_memory_stays_flat_as_a_streamed_split_grows(tmp_path):
    """Ten times the rows (4 → 40 shards of 200 images at 96 px, 21 → 211 MiB of pixels): the memory a streamed
    split and its epoch add to the process grows by under a third of the difference, while holding the split grows
    with it (which shows the measure can fail)."""
    rows, size = 200, 96
    small = write_shards(tmp_path / "small", 4, rows, size)
    large = write_shards(tmp_path / "large", 40, rows, size)
    streamed = [peak_mb(paths, 0, runs=2) for paths in (small, large)]
    held = [peak_mb(paths, 1e6) for paths in (small, large)]
    assert all(r["streamed"] for r in streamed) and not any(r["streamed"] for r in held)
    grown = 36 * rows * size * size * 3 / 2**20
    assert held[1]["peak_mb"] - held[0]["peak_mb"] > 0.8 * grown, held
    assert streamed[1]["peak_mb"] - streamed[0]["peak_mb"] < 0.3 * grown, (streamed, held)
