"""Prepared shards -> heatmap files: predictions, patch-grid heatmaps and RMA for every sample.

Everything per sample (preprocessing, the rollout, upsampling, RMA) runs batched on the model's device; the
host sees one transfer per batch. Heatmaps are stored at patch resolution (float16), so re-scoring with
another threshold never recomputes them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import torch

from vlm_rationality.data.corruptions import apply_shift
from vlm_rationality.data.shards import iter_batches
from vlm_rationality.explain.chefer import HEATMAP_METHODS, Target
from vlm_rationality.io import check_schema, with_metadata, write_parquet
from vlm_rationality.metrics.rma import STATUSES, relevance_mass_accuracy
from vlm_rationality.models.heads import ImageClassifier

SCHEMA_NAME = "heatmaps/1"
AMP_DTYPES = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class HeatmapSettings:
    """Everything that decides a heatmap; identical for every (model, method) of a run."""

    method: str = "chefer"
    target: Target = "label"
    start_block: int = 0
    batch_size: int = 64
    amp: str | None = None

    def __post_init__(self) -> None:
        HEATMAP_METHODS.get(self.method)
        if self.amp not in AMP_DTYPES:
            raise KeyError(f"heatmaps.amp must be one of none, bf16, fp16; got {self.amp!r}")
        if self.batch_size < 1:
            raise ValueError(f"heatmaps.batch_size must be >= 1, got {self.batch_size}")


def heatmap_schema(num_classes: int, grid_cells: int) -> pa.Schema:
    return pa.schema([
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("pred", pa.int32(), nullable=False),
        pa.field("logits", pa.list_(pa.float16(), num_classes), nullable=False),
        pa.field("heatmap", pa.list_(pa.float16(), grid_cells), nullable=False),
        pa.field("rma", pa.float32()),
        pa.field("rma_status", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("explained_class", pa.int32(), nullable=False),
        pa.field("heatmap_method", pa.dictionary(pa.int8(), pa.string()), nullable=False),
    ])


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def explain_shards(
    classifier: ImageClassifier,
    in_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    settings: HeatmapSettings,
    config_hash: str,
    device: torch.device | str = "cpu",
    keys: dict[str, str] | None = None,
    shift: str = "clean",
) -> dict[str, Any]:
    """Explain every sample of a group of prepared shards into one heatmap file; returns a summary.

    Batches never cross a shard boundary, so a shard's rows are the same whichever group it is explained in.
    `keys` (dataset, shift, model, method) go into the file's metadata, so the score stage needs nothing
    but the files themselves.
    """
    skipped: Counter[str] = Counter()
    for path in in_paths:
        skipped.update(check_schema(path, "prepared-samples/1").get("skipped", {}))
    device = torch.device(device)
    explain = HEATMAP_METHODS.get(settings.method)
    classifier = classifier.to(device).eval()
    columns: dict[str, list] = {name: [] for name in ("sample_id", "label", "pred", "logits", "heatmap", "rma", "status", "explained")}
    for batch in (batch for path in in_paths for batch in iter_batches([path], settings.batch_size)):
        if shift != "clean":
            batch.images = torch.from_numpy(apply_shift(batch.images.numpy(), batch.sample_ids, shift))
        batch = batch.to(device)
        images = classifier.model.preprocess(batch.images)
        result = explain(classifier, images, batch.labels, settings.target, settings.start_block, AMP_DTYPES[settings.amp])
        rma, status = relevance_mass_accuracy(result.relevance, batch.masks())
        on_host = [t.cpu() for t in (result.logits, result.relevance, rma, status, result.explained_class)]
        logits, relevance, rma, status, explained = (t.numpy() for t in on_host)
        columns["sample_id"] += batch.sample_ids
        columns["label"].append(batch.labels.cpu().numpy())
        columns["pred"].append(logits.argmax(axis=1))
        columns["logits"].append(logits.astype(np.float16))
        columns["heatmap"].append(relevance.reshape(len(relevance), -1).astype(np.float16))
        columns["rma"].append(rma.astype(np.float32))
        columns["status"].append(status)
        columns["explained"].append(explained)
    grid = classifier.model.grid_size
    empty = {  # a shard whose every item was bad input still gets its (empty) heatmap shard
        "label": np.zeros(0, np.int64), "pred": np.zeros(0, np.int64), "logits": np.zeros((0, classifier.num_classes)),
        "heatmap": np.zeros((0, grid[0] * grid[1])), "rma": np.zeros(0), "status": np.zeros(0, np.int8),
        "explained": np.zeros(0, np.int64),
    }
    stacked = {name: np.concatenate(values) if values else empty[name] for name, values in columns.items() if name != "sample_id"}
    n = len(columns["sample_id"])
    table = pa.Table.from_arrays([
        pa.array(columns["sample_id"], pa.string()),
        pa.array(stacked["label"].astype(np.int32)),
        pa.array(stacked["pred"].astype(np.int32)),
        _fixed_list(stacked["logits"]),
        _fixed_list(stacked["heatmap"]),
        pa.array(stacked["rma"], pa.float32()),
        pa.DictionaryArray.from_arrays(pa.array(stacked["status"], pa.int8()), pa.array(STATUSES)),
        pa.array(stacked["explained"].astype(np.int32)),
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([settings.method])),
    ], schema=heatmap_schema(classifier.num_classes, grid[0] * grid[1]))
    meta = {"grid_size": list(grid), "image_size": classifier.model.preprocess.image_size,
            "heatmap_target": settings.target, "start_block": settings.start_block, "amp": settings.amp,
            "source_shards": [os.fspath(p) for p in in_paths], "shift": shift, "skipped": dict(skipped), "keys": keys or {}}
    write_parquet(with_metadata(table, SCHEMA_NAME, config_hash, meta), out_path)
    correct = stacked["pred"] == stacked["label"]
    accuracy = float(correct.mean()) if n else float("nan")
    return {"n": n, "accuracy": accuracy, "undefined_rma": int(np.sum(stacked["status"] != 0))}
