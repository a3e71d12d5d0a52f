"""Prepared shards -> heatmap files: predictions, patch-grid heatmaps and RMA for every sample.

Everything per sample (preprocessing, the explanation, upsampling, RMA) runs batched on the model's device; the
host sees one transfer per batch. Heatmaps are stored at patch resolution (float16), so re-scoring with
another threshold never recomputes them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch

from vlm_rationality.artefacts import (
    NO_PREDICTION,
    PreparedShard,
    write_heatmap_shard,
)
from vlm_rationality.data.corruptions import shift_to_apply
from vlm_rationality.data.shards import batches_under_shift, cue_columns
from vlm_rationality.device import AMP_DTYPES
from vlm_rationality.explain.base import HEATMAP_METHODS, HeatmapMethod, Target
from vlm_rationality.explain.batch_size import auto_batch_size, batch_memory
from vlm_rationality.metrics.rma import relevance_mass_accuracy
from vlm_rationality.models.heads import ImageClassifier
from vlm_rationality.progress import Progress


@dataclass(frozen=True)
class HeatmapSettings:
    """Everything that decides one heatmap method's maps; the same for every (model, fine-tuning method)."""

    method: str = "chefer"
    target: Target = "label"
    start_block: int = 0
    batch_size: int | Literal["auto"] = 64  # auto: the largest the GPU's free memory holds (batch_size.py)
    amp: str | None = None
    compile: bool = False  # chefer and rollout: the attention through torch.compile (gradcam reads no attention)

    def __post_init__(self) -> None:
        HEATMAP_METHODS.get(self.method)
        if self.amp not in AMP_DTYPES:
            raise KeyError(f"heatmaps.amp must be one of none, bf16, fp16; got {self.amp!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"heatmaps.batch_size must be an integer >= 1 or auto, got {self.batch_size!r}")

    def build(self) -> HeatmapMethod:
        return HEATMAP_METHODS.get(self.method)(self.target, self.start_block, AMP_DTYPES[self.amp], self.compile)


def explain_shards(
    classifier: ImageClassifier,
    in_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    settings: HeatmapSettings,
    config_hash: str,
    device: torch.device | str = "cpu",
    keys: dict[str, str] | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Explain every sample of a group of prepared shards into one heatmap file; returns a summary.

    Batches never cross a shard boundary, so a shard's rows are the same whichever group it is explained in.
    `keys` (dataset, shift, model, method) go into the file's metadata with the heatmap method, so the score
    stage needs nothing but the files themselves; `keys["shift"]` (default clean) is applied on the fly, in
    `workers` processes ahead of the device (0: in the thread that reads the shards ahead), unless the shards were
    prepared under it (pre-rendered ImageNet-C).
    """
    keys = {
        "dataset": "",
        "shift": "clean",
        "model": "",
        "method": "",
        **(keys or {}),
        "heatmap_method": settings.method,
    }
    device = torch.device(device)
    classifier = classifier.to(device).eval()
    explain = settings.build()
    batch_size = auto_batch_size(explain, classifier, device) if settings.batch_size == "auto" else settings.batch_size
    columns = explained_columns(
        classifier, explain, in_paths, batch_size, keys["shift"], device, workers, settings.method
    )
    on_the_fly = shift_to_apply(in_paths, keys["shift"])
    shard_metas = [PreparedShard(path).meta for path in in_paths]
    meta = {
        "grid_size": list(classifier.model.grid_size),
        "image_size": classifier.model.preprocess.image_size,
        "heatmap_target": settings.target,
        "start_block": settings.start_block,
        "amp": settings.amp,
        "batch_size": batch_size,
        "source_shards": [os.fspath(p) for p in in_paths],
        "shift": keys["shift"],
        "skipped": dict(sum((Counter(m.get("skipped", {})) for m in shard_metas), Counter())),
        "sticker_missing": sum(int(m.get("sticker_missing", 0)) for m in shard_metas),
        "cue": "local" if cue_columns(in_paths) else "background",
        "shift_source": "on the fly" if on_the_fly != "clean" else "prepared" if keys["shift"] != "clean" else "none",
    }
    return write_columns(columns, out_path, keys, config_hash, meta)


def explained_columns(
    classifier: ImageClassifier,
    explain: HeatmapMethod,
    in_paths: Sequence[str | os.PathLike],
    batch_size: int,
    shift: str,
    device: torch.device,
    workers: int = 0,
    method: str = "",
) -> dict[str, Any]:
    """Batches -> the heatmap file's columns: sample ids, labels, predictions (NO_PREDICTION where a logit is not
    finite), logits, patch-grid heatmaps, RMA and its status, the explained class, the relevance mass on the cue's
    pixels (`PreparedBatch.cue_masks`); as numpy, empty where no sample was left."""
    names = ("sample_id", "label", "pred", "logits", "heatmap", "rma", "status", "explained", "cue_rma")
    columns: dict[str, list] = {name: [] for name in names}
    progress, right = Progress(f"explain {method}".rstrip(), sum(PreparedShard(p).rows for p in in_paths)), 0
    with batches_under_shift(in_paths, batch_size, shift, cue_columns(in_paths), workers=workers) as batches:
        for batch in batches:
            batch = batch.to(device)
            with batch_memory(batch_size, device):
                result = explain(classifier, classifier.model.preprocess(batch.images), batch.labels)
            rma, status = relevance_mass_accuracy(result.relevance, batch.masks())
            cue_rma, _ = relevance_mass_accuracy(result.relevance, batch.cue_masks())
            on_host = [t.cpu() for t in (result.logits, result.relevance, rma, status, result.explained_class, cue_rma)]
            logits, relevance, rma, status, explained, cue_rma = (t.numpy() for t in on_host)
            columns["sample_id"] += batch.sample_ids
            columns["label"].append(batch.labels.cpu().numpy())
            # A non-finite logit (e.g. a checkpoint with NaN weights) makes no prediction: argmax would say class 0.
            columns["pred"].append(np.where(np.isfinite(logits).all(axis=1), logits.argmax(axis=1), NO_PREDICTION))
            columns["logits"].append(logits)
            columns["heatmap"].append(relevance.reshape(len(relevance), -1))
            columns["rma"].append(rma)
            columns["status"].append(status)
            columns["explained"].append(explained)
            columns["cue_rma"].append(cue_rma)
            right += int((columns["pred"][-1] == columns["label"][-1]).sum())
            progress.update(len(batch.sample_ids), f"shift {shift}", acc=right / len(columns["sample_id"]))
    progress.close()
    grid = classifier.model.grid_size
    empty = {  # a shard whose every item was bad input still gets its (empty) heatmap shard
        "label": np.zeros(0, np.int64),
        "pred": np.zeros(0, np.int64),
        "logits": np.zeros((0, classifier.num_classes)),
        "heatmap": np.zeros((0, grid[0] * grid[1])),
        "rma": np.zeros(0),
        "status": np.zeros(0, np.int8),
        "explained": np.zeros(0, np.int64),
        "cue_rma": np.zeros(0),
    }
    stacked = {
        name: np.concatenate(values) if values else empty[name]
        for name, values in columns.items()
        if name != "sample_id"
    }
    return {"sample_id": columns["sample_id"], **stacked}


def write_columns(
    columns: dict[str, Any], out_path: str | os.PathLike, keys: dict[str, str], config_hash: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """Columns -> the heatmap file (atomically, artefacts.py's contract); returns the job's summary."""
    write_heatmap_shard(
        out_path,
        sample_ids=columns["sample_id"],
        labels=columns["label"],
        preds=columns["pred"],
        logits=columns["logits"],
        heatmaps=columns["heatmap"],
        rma=columns["rma"],
        rma_status=columns["status"],
        explained_class=columns["explained"],
        cue_rma=columns["cue_rma"],
        keys=keys,
        config_hash=config_hash,
        meta=meta,
    )
    predicted = columns["pred"] != NO_PREDICTION
    accuracy = float((columns["pred"] == columns["label"])[predicted].mean()) if predicted.any() else float("nan")
    return {
        "n": len(columns["sample_id"]),
        "accuracy": accuracy,
        "nonfinite_logits": int((~predicted).sum()),
        "undefined_rma": int(np.sum(columns["status"] != 0)),
    }
