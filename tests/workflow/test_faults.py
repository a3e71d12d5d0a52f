"""Faults found by trying the benchmark as a user would: each fails clearly, names its file, or is counted."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal

import numpy as np
import pytest
import torch

from tests import fixtures
from vlm_rationality.artefacts import (
    PreparedShard,
    read_heatmaps,
    read_metrics,
)
from vlm_rationality.data import Sample, Skipped, build_dataset
from vlm_rationality.data.prepare import prepare_shard, write_item_index
from vlm_rationality.data.synthetic import SyntheticSpec, generate
from vlm_rationality.explain.heatmaps import HeatmapSettings, explain_shards
from vlm_rationality.metrics.score import score_table
from vlm_rationality.models import build_classifier, build_model
from vlm_rationality.report.figures import pt_ir_figure
from vlm_rationality.report.tables import latex_tables, markdown_table, report_markdown


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    samples = list(generate(SyntheticSpec(image_size=32), "test", 10))
    return fixtures.prepared_shard(tmp_path_factory.mktemp("prepared") / "shard-0000.parquet", samples)


def _truncated(path, tmp_path):
    damaged = tmp_path / path.name
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return damaged


@pytest.mark.parametrize(
    "read",
    [
        lambda p: PreparedShard(p).meta,
        lambda p: PreparedShard(p).read(),
        lambda p: list(PreparedShard(p).batches(4)),
        lambda p: read_heatmaps(p, ["rma"]),
        read_metrics,
    ],
    ids=["meta", "prepared", "batches", "heatmaps", "metrics"],
)
def test_a_truncated_parquet_file_is_named_with_what_to_do(shard, tmp_path, read):
    damaged = _truncated(shard, tmp_path)
    with pytest.raises(ValueError, match=rf"{damaged}: not a readable Parquet file .*magic bytes.*delete it and rerun"):
        read(damaged)


def _damaged_in_the_middle(path, tmp_path):
    """Bytes overwritten in the first page's data, as a bad disk sector or an interrupted rsync leaves them."""
    import pyarrow.parquet as pq

    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    data = bytearray(path.read_bytes())
    middle = column.data_page_offset + column.total_compressed_size // 2
    data[middle : middle + 16] = bytes(16 - i for i in range(16))
    damaged = tmp_path / ("mid-" + path.name)
    damaged.write_bytes(bytes(data))
    return damaged


def test_damage_in_a_column_the_consumer_never_reads_is_refused(tiny_model, prompts, shard, tmp_path):
    """A heatmap file whose key column `dataset` (score reads only its metadata) is damaged: refused, naming it."""
    import pyarrow.parquet as pq

    out = tmp_path / "heatmaps.parquet"
    explain_shards(build_classifier(tiny_model, "prompt", prompts), [shard], out, HeatmapSettings(batch_size=8), "h")
    names = pq.ParquetFile(out).schema_arrow.names
    column = pq.ParquetFile(out).metadata.row_group(0).column(names.index("dataset"))
    data = bytearray(out.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    tail = start + column.total_compressed_size - 1
    data[tail] ^= 0xFF  # a byte of the column's last page flipped: the file's layout stays as it was
    damaged = tmp_path / "damaged" / out.name
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{damaged}: not a readable Parquet file"):
        score_table([damaged], 0.5, 0, 0)


@pytest.mark.parametrize(
    "read", [lambda p: PreparedShard(p).read(), lambda p: list(PreparedShard(p).batches(4))], ids=["whole", "batches"]
)
def test_a_parquet_file_damaged_in_the_middle_is_named_not_read(shard, tmp_path, read):
    """Every page carries a CRC: an overwritten page is refused, naming the file, where it would decode to wrong
    pixels (an incompressible page is stored raw) or fail with pyarrow's message alone."""
    damaged = _damaged_in_the_middle(shard, tmp_path)
    with pytest.raises(ValueError, match=rf"{damaged}: not a readable Parquet file .*delete it and rerun"):
        read(damaged)


def test_a_truncated_safetensors_base_is_named(tmp_path):
    from vlm_rationality.models.checkpoint import save_state_dict

    path = tmp_path / "base.safetensors"
    save_state_dict(build_model({"adapter": "open_clip", "arch": "tiny-vit-32"}).model.state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"checkpoint {path} is not a readable safetensors file"):
        build_model({"adapter": "open_clip", "arch": "tiny-vit-32", "pretrained": str(path)})


def test_a_damaged_heatmap_file_fails_the_score_naming_it(tiny_model, prompts, shard, tmp_path):
    out = tmp_path / "heatmaps.parquet"
    explain_shards(build_classifier(tiny_model, "prompt", prompts), [shard], out, HeatmapSettings(batch_size=8), "h")
    (tmp_path / "damaged").mkdir()
    damaged = _truncated(out, tmp_path / "damaged")
    with pytest.raises(ValueError, match=rf"{damaged}: not a readable Parquet file"):
        score_table([out, damaged], 0.5, 10, 0)
    damaged = _damaged_in_the_middle(out, tmp_path / "damaged")
    with pytest.raises(ValueError, match=rf"{damaged}: not a readable Parquet file"):
        score_table([out, damaged], 0.5, 10, 0)


def _bomb_jpeg(path, side: int = 14_000) -> None:
    """A small JPEG whose header claims side × side pixels: PIL refuses it at open, before decoding."""
    fixtures.photo(path)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")  # baseline start-of-frame: length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))


def test_a_decompression_bomb_is_counted_as_unreadable_with_its_path(tmp_path, caplog):
    fixture = fixtures.imagenet(tmp_path / "in")
    victim = next(sample_id for sample_id in fixture.boxes)
    _bomb_jpeg(fixture.root / victim)
    config = {
        "adapter": "imagenet",
        "root": str(fixture.root),
        "image_size": 32,
        "shard_size": 100,
        "splits": {"val": {}},
    }
    dataset = build_dataset(config)
    entries = list(dataset.samples("val", 0, dataset.split_size("val")))
    bombs = [e for e in entries if isinstance(e, Skipped) and e.sample_id == victim]
    assert len(bombs) == 1 and bombs[0].reason == "unreadable_image" and "decompression bomb" in bombs[0].detail
    assert sum(isinstance(e, Sample) for e in entries) == len(fixture.boxes) - 1
    with caplog.at_level(logging.WARNING, logger="vlm_rationality"):
        write_item_index(config, "val", tmp_path / "items.parquet", "h")
        counts = prepare_shard(config, "val", 0, tmp_path / "items.parquet", tmp_path / "shard-0000.parquet", "h")
    assert counts["skipped"]["unreadable_image"] == fixture.bad["unreadable_image"] + 1
    assert any(victim in record.getMessage() and str(fixture.root) in record.getMessage() for record in caplog.records)


def _strip(path, width, height):
    from PIL import Image

    Image.new("RGB", (width, height), (200, 30, 30)).save(path, format="PNG")  # a few hundred bytes


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda path: _strip(path, 30_000, 1), "extreme_aspect_ratio"),
        (lambda path: _strip(path, 1, 30_000), "extreme_aspect_ratio"),
        (lambda path: (path.unlink(), os.mkfifo(path)), "not_a_file"),
    ],
    ids=["very-wide", "very-tall", "fifo"],
)
def test_an_image_that_would_exhaust_memory_or_block_is_skipped_and_counted(tmp_path, damage, reason):
    """A 30000x1 strip resized to a 32-pixel short side would be ~1 M pixels wide (at 224: 6.7 M x 224, gigabytes);
    a FIFO blocks whoever opens it. Both are skipped by their shape or type, before decoding or opening."""
    fixture = fixtures.imagenet(tmp_path / "in")
    victim = next(sample_id for sample_id in fixture.boxes)
    damage(fixture.root / victim)
    config = {
        "adapter": "imagenet",
        "root": str(fixture.root),
        "image_size": 32,
        "shard_size": 100,
        "splits": {"val": {}},
    }
    signal.alarm(120)  # a FIFO that is opened blocks forever: fail instead
    try:
        write_item_index(config, "val", tmp_path / "items.parquet", "h")
        counts = prepare_shard(config, "val", 0, tmp_path / "items.parquet", tmp_path / "shard-0000.parquet", "h")
    finally:
        signal.alarm(0)
    assert counts["skipped"][reason] == 1
    assert (
        counts["written"] == len(fixture.boxes) - 1
        and counts["skipped"]["unreadable_image"] == fixture.bad["unreadable_image"]
    )
    assert victim not in PreparedShard(tmp_path / "shard-0000.parquet").read()["sample_id"]


def test_non_finite_logits_make_no_prediction_are_counted_and_mark_the_classifier_broken(
    prompts, shard, tmp_path, caplog
):
    model = build_model({"adapter": "open_clip", "arch": "tiny-vit-32"})
    classifier = build_classifier(model, "linear", prompts)
    with torch.no_grad():
        classifier.head.weight[:, 0] = math.nan  # a checkpoint with NaN weights: every logit NaN
    out = tmp_path / "heatmaps.parquet"
    summary = explain_shards(
        classifier,
        [shard],
        out,
        HeatmapSettings(batch_size=8),
        "h",
        keys={"dataset": "d", "model": "m", "method": "ft"},
    )
    assert summary["nonfinite_logits"] == 10 and math.isnan(summary["accuracy"])
    _, table = read_heatmaps(out, ["pred"])
    assert set(table.column("pred").to_pylist()) == {-1}
    with caplog.at_level(logging.WARNING, logger="vlm_rationality"):
        rows = score_table([out], 0.5, 10, 0).to_pylist()
    row = rows[0]
    assert row["n_nonfinite_logits"] == 10 and row["n"] == 0 and math.isnan(row["accuracy"])
    assert any(
        "d/clean/m/ft/chefer: 10 of 10 samples have non-finite logits, so this classifier is broken"
        in record.getMessage()
        for record in caplog.records
    )
    # Every table says so where the numbers would be; the figure writes it over the missing bars.
    markdown = markdown_table(rows, ["ft"], ["m"], ["d"], "clean")
    assert "| FT | m | broken: 10 non-finite logits | – |" in markdown
    assert "broken: 10 non-finite logits" in latex_tables(rows, ["ft"], ["m"], ["d"], ["chefer"])
    pt_ir_figure(rows, ["ft"], ["m"], ["d"], ["chefer"], tmp_path / "pt_ir.png")
    assert (tmp_path / "pt_ir.png").stat().st_size > 0


@pytest.mark.parametrize("adapter", ["open_clip", "albef"])
def test_a_pickle_checkpoint_refused_by_weights_only_is_named_with_why(tmp_path, adapter):
    from vlm_rationality.models.bert_vit import read_checkpoint

    model = build_model({"adapter": "open_clip", "arch": "tiny-vit-32"})
    path = tmp_path / "trainer-state.pt"
    torch.save({"state_dict": model.model.state_dict(), "args": argparse.Namespace(lr=1e-4)}, path)
    load = {
        "open_clip": lambda: build_model({"adapter": "open_clip", "arch": "tiny-vit-32", "pretrained": str(path)}),
        "albef": lambda: read_checkpoint(path),
    }[adapter]  # ALBEF's and BLIP's official .pth go through here
    with pytest.raises(ValueError, match=rf"{path} is refused: .*\(argparse\.Namespace\).*arbitrary code") as error:
        load()
    assert "weights_only=False" not in str(error.value)


def test_identical_checkpoints_are_byte_identical_across_processes(tmp_path):
    """safetensors writes its metadata in a per-process hash order; the saved header is sorted."""
    import subprocess
    import sys

    script = (
        "import sys, torch; from vlm_rationality.models.checkpoint import save_state_dict; "
        "save_state_dict({'w': torch.arange(6.0)}, sys.argv[1], metadata={k: k * 2 for k in 'abcdefgh'})"
    )
    paths = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for path in paths:
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    assert len({path.read_bytes() for path in paths}) == 1
    from safetensors import safe_open

    with safe_open(str(paths[0]), framework="pt") as handle:
        metadata, tensor = handle.metadata(), handle.get_tensor("w").tolist()
    assert metadata.pop("vlm_rationality.provenance")  # what wrote it, the same in every process
    assert metadata == {k: k * 2 for k in "abcdefgh"} and tensor == list(range(6))


def test_an_explain_batch_out_of_memory_names_the_batch_size_setting():
    from vlm_rationality.explain.batch_size import batch_memory

    with pytest.raises(
        MemoryError,
        match=r"out of memory explaining a batch of 64 images on cpu: lower "
        r"heatmaps\.batch_size, or on CUDA set it to auto",
    ):
        with batch_memory(64, torch.device("cpu")):
            torch.empty(2**50, dtype=torch.uint8)  # the CPU allocator's real refusal (4 PiB)
    with pytest.raises(RuntimeError, match="not a memory error"):
        with batch_memory(64, torch.device("cpu")):
            raise RuntimeError("not a memory error")


def test_a_shard_of_another_split_or_config_is_refused_naming_it(shard):
    """What a model job checks before it reads a shard (cli.py `--expect-prepared`): split and config hash."""
    from vlm_rationality.artefacts import check_prepared

    check_prepared([shard], {"test": "h"})
    with pytest.raises(ValueError, match=rf"{shard} was prepared with another config \(hash h; the plan's is h2\)"):
        check_prepared([shard], {"test": "h2"})
    samples = list(generate(SyntheticSpec(image_size=32), "train", 2))
    train = fixtures.prepared_shard(shard.with_name("train-shard.parquet"), samples, split="train")
    with pytest.raises(ValueError, match=rf"{train} holds split 'train', but this job reads 'test': a shard copied"):
        check_prepared([train], {"test": "h"})


def test_a_shard_copied_over_another_of_the_same_split_is_refused(tmp_path):
    """Split and config hash match, so only the shard's recorded place tells: the same samples would count twice."""
    from vlm_rationality.artefacts import check_prepared

    config = {"adapter": "synthetic", "image_size": 32, "shard_size": 4, "splits": {"test": {"size": 8}}}
    write_item_index(config, "test", tmp_path / "items.parquet", "h")
    shards = [tmp_path / f"shard-{k:04d}.parquet" for k in range(2)]
    for k, path in enumerate(shards):
        prepare_shard(config, "test", k, tmp_path / "items.parquet", path, "h")
    check_prepared(shards, {"test": "h"})
    assert PreparedShard(shards[1]).meta["shard"] == 1 and PreparedShard(shards[1]).meta["rows"] == [4, 8]
    shards[1].write_bytes(shards[0].read_bytes())
    with pytest.raises(ValueError, match=rf"{shards[1]} holds shard 0 \(items 0-3 of split 'test'\), not shard 0001"):
        check_prepared(shards, {"test": "h"})
    renamed = tmp_path / "copy.parquet"  # no place in its name to compare: the repeated samples still tell
    shards[1].rename(renamed)
    repeated = rf"sample 'test-000000' of split 'test' is in {shards[0]} and again in {renamed}"
    with pytest.raises(ValueError, match=repeated):
        check_prepared([shards[0], renamed], {"test": "h"})


def test_stickers_that_do_not_fit_are_counted_from_shard_to_table(tmp_path, tiny_model, prompts, caplog):
    """sticker_size 0.5 on 32-px images at rho 1: most images of the tied class have no place for the sticker. They
    are kept (their truth is "no sticker"), and the shortfall is warned about, counted and carried to the table."""
    from vlm_rationality.data.prepare import split_report

    config = {
        "adapter": "synthetic",
        "image_size": 32,
        "shard_size": 40,
        "cue": "sticker",
        "sticker_size": 0.5,
        "splits": {"test": {"size": 40, "rho": 1.0}},
    }
    write_item_index(config, "test", tmp_path / "items.parquet", "h")
    shard = tmp_path / "shard-0000.parquet"
    with caplog.at_level(logging.WARNING, logger="vlm_rationality"):
        prepare_shard(config, "test", 0, tmp_path / "items.parquet", shard, "h")
    missing = PreparedShard(shard).meta["sticker_missing"]
    tied = PreparedShard(shard).read()
    carrying = int(np.sum(tied["label"] == 0))
    assert 0 < missing == carrying - int(sum(m.any() for m, y in zip(tied["cue_mask"], tied["label"]) if y == 0))
    assert any(f"{missing} of 40 images drawn to carry the sticker have none" in r.getMessage() for r in caplog.records)
    assert split_report([shard], tmp_path / "report.json")["sticker_missing"] == missing
    out = tmp_path / "heatmaps.parquet"
    explain_shards(build_classifier(tiny_model, "prompt", prompts), [shard], out, HeatmapSettings(batch_size=8), "h")
    rows = score_table([out], 0.5, 0, 0).to_pylist()
    assert rows[0]["n_sticker_missing"] == missing
    text = report_markdown(rows, [rows[0]["method"]], [rows[0]["model"]], [rows[0]["dataset"]], ["chefer"])
    assert f"{rows[0]['dataset']}: {missing} scored images drawn to carry the sticker have none" in text


def test_an_index_entry_leading_out_of_the_dataset_root_is_skipped_and_counted(tmp_path):
    """A CUB images.txt line `../../outside/secret.JPEG` would be read from outside the root: it is never opened."""
    fixture = fixtures.cub(tmp_path / "cub")
    secret = tmp_path / "outside" / "secret.JPEG"
    fixtures.photo(secret)
    with open(fixture.root / "images.txt", "a") as index:
        index.write("99 ../../outside/secret.JPEG\n")
    (fixture.root / "image_class_labels.txt").write_text(
        (fixture.root / "image_class_labels.txt").read_text() + "99 1\n"
    )
    (fixture.root / "train_test_split.txt").write_text((fixture.root / "train_test_split.txt").read_text() + "99 0\n")
    config = {"adapter": "cub", "root": str(fixture.root), "image_size": 32, "shard_size": 100, "splits": {"test": {}}}
    write_item_index(config, "test", tmp_path / "items.parquet", "h")
    counts = prepare_shard(config, "test", 0, tmp_path / "items.parquet", tmp_path / "shard-0000.parquet", "h")
    assert counts["skipped"]["outside_root"] == 1
    assert "images/../../outside/secret.JPEG" not in PreparedShard(tmp_path / "shard-0000.parquet").read()["sample_id"]


def test_score_refuses_a_sample_twice(tmp_path, shard, tiny_model, prompts):
    """A heatmap file copied over another of the same classifier: its rows would count twice in every rate."""
    copies = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    classifier = build_classifier(tiny_model, "prompt", prompts)
    explain_shards(classifier, [shard], copies[0], HeatmapSettings(batch_size=8), "h")
    copies[1].write_bytes(copies[0].read_bytes())
    with pytest.raises(ValueError, match=rf"sample '\S+' comes more than once in {copies[0]}, {copies[1]}"):
        score_table(copies, 0.5, 0, 0)


def test_a_damaged_sidecar_is_named(tmp_path):
    from vlm_rationality.models.classifier_spec import read_sidecar

    checkpoint = tmp_path / "ft.safetensors"
    checkpoint.with_suffix(".json").write_text('{"config": ')  # cut off mid-write by hand
    with pytest.raises(ValueError, match=rf"{checkpoint.with_suffix('.json')}: not valid JSON .*delete {checkpoint}"):
        read_sidecar(checkpoint)
