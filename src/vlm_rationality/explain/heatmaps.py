"""Prepared shards -> heatmap files: predictions, patch-grid heatmaps and RMA for every sample.

Everything per sample (preprocessing, the explanation, upsampling, RMA) runs batched on the model's device; the
host sees one transfer per batch. Heatmaps are stored at patch resolution (float16), so re-scoring with
another threshold never recomputes them.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, deque
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from queue import Queue
from typing import Any, Iterable, Iterator, Literal, Sequence, TypeVar

import numpy as np
import torch

from vlm_rationality.artefacts import NO_PREDICTION, prepared_meta, prepared_rows, write_heatmap_shard
from vlm_rationality.data.corruptions import apply_shift, shift_to_apply
from vlm_rationality.data.shards import PreparedBatch, iter_batches
from vlm_rationality.device import AMP_DTYPES
from vlm_rationality.explain.base import HEATMAP_METHODS, HeatmapMethod, Target
from vlm_rationality.explain.batch_size import auto_batch_size, batch_memory
from vlm_rationality.metrics.rma import relevance_mass_accuracy
from vlm_rationality.models.heads import ImageClassifier
from vlm_rationality.progress import Progress

T = TypeVar("T")
PREFETCH = 2  # batches read (and corrupted) ahead of the device


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


def prefetched(items: Iterable[T], depth: int = PREFETCH) -> Iterator[T]:
    """`items`, produced by a background thread up to `depth` ahead of the consumer (an error is raised where the
    item it interrupted would have come). Reading a shard and decompressing it then overlap with the device's work."""
    queue: Queue = Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                queue.put((item, None))
            queue.put((done, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            queue.put((None, err))

    threading.Thread(target=produce, daemon=True).start()
    while True:
        item, error = queue.get()
        if error is not None:
            raise error
        if item is done:
            return
        yield item


def shifted(
    batches: Iterable[PreparedBatch], shift: str, pool: Executor | None = None, ahead: int = 0
) -> Iterator[PreparedBatch]:
    """Batches with `shift` applied; with a `pool`, the corruptions of up to `ahead` more batches run in its
    processes while one is explained (a sample's corruption is seeded by its id: the order of work changes nothing)."""
    if shift == "clean":
        yield from batches
        return
    pin = torch.cuda.is_available()

    def finish(batch: PreparedBatch, images: Any) -> PreparedBatch:
        images = torch.from_numpy(images.result() if pool is not None else images)
        batch.images = images.pin_memory() if pin else images
        return batch

    pending: deque = deque()
    for batch in batches:
        work = batch.images.numpy(), batch.sample_ids, shift
        pending.append((batch, pool.submit(apply_shift, *work) if pool is not None else apply_shift(*work)))
        if len(pending) > ahead:
            yield finish(*pending.popleft())
    while pending:
        yield finish(*pending.popleft())


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
    shift = keys["shift"]
    on_the_fly = shift_to_apply(in_paths, shift)
    skipped: Counter[str] = Counter()
    for path in in_paths:
        skipped.update(prepared_meta(path).get("skipped", {}))
    device = torch.device(device)
    explain = settings.build()
    classifier = classifier.to(device).eval()
    batch_size = auto_batch_size(explain, classifier, device) if settings.batch_size == "auto" else settings.batch_size
    columns: dict[str, list] = {
        name: [] for name in ("sample_id", "label", "pred", "logits", "heatmap", "rma", "status", "explained")
    }
    progress, right = Progress(f"explain {settings.method}", sum(prepared_rows(p) for p in in_paths)), 0
    pool = (
        ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 0 and on_the_fly != "clean" else None
    )
    try:
        for batch in prefetched(shifted(iter_batches(in_paths, batch_size), on_the_fly, pool, workers)):
            batch = batch.to(device)
            with batch_memory(batch_size, device):
                result = explain(classifier, classifier.model.preprocess(batch.images), batch.labels)
            rma, status = relevance_mass_accuracy(result.relevance, batch.masks())
            on_host = [t.cpu() for t in (result.logits, result.relevance, rma, status, result.explained_class)]
            logits, relevance, rma, status, explained = (t.numpy() for t in on_host)
            columns["sample_id"] += batch.sample_ids
            columns["label"].append(batch.labels.cpu().numpy())
            # A non-finite logit (e.g. a checkpoint with NaN weights) makes no prediction: argmax would say class 0.
            columns["pred"].append(np.where(np.isfinite(logits).all(axis=1), logits.argmax(axis=1), NO_PREDICTION))
            columns["logits"].append(logits)
            columns["heatmap"].append(relevance.reshape(len(relevance), -1))
            columns["rma"].append(rma)
            columns["status"].append(status)
            columns["explained"].append(explained)
            right += int((columns["pred"][-1] == columns["label"][-1]).sum())
            progress.update(len(batch.sample_ids), f"shift {shift}", acc=right / len(columns["sample_id"]))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
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
    }
    stacked = {
        name: np.concatenate(values) if values else empty[name]
        for name, values in columns.items()
        if name != "sample_id"
    }
    meta = {
        "grid_size": list(grid),
        "image_size": classifier.model.preprocess.image_size,
        "heatmap_target": settings.target,
        "start_block": settings.start_block,
        "amp": settings.amp,
        "batch_size": batch_size,
        "source_shards": [os.fspath(p) for p in in_paths],
        "shift": shift,
        "skipped": dict(skipped),
        "shift_source": "on the fly" if on_the_fly != "clean" else "prepared" if shift != "clean" else "none",
    }
    write_heatmap_shard(
        out_path,
        sample_ids=columns["sample_id"],
        labels=stacked["label"],
        preds=stacked["pred"],
        logits=stacked["logits"],
        heatmaps=stacked["heatmap"],
        rma=stacked["rma"],
        rma_status=stacked["status"],
        explained_class=stacked["explained"],
        keys=keys,
        config_hash=config_hash,
        meta=meta,
    )
    predicted = stacked["pred"] != NO_PREDICTION
    accuracy = float((stacked["pred"] == stacked["label"])[predicted].mean()) if predicted.any() else float("nan")
    return {
        "n": len(columns["sample_id"]),
        "accuracy": accuracy,
        "nonfinite_logits": int((~predicted).sum()),
        "undefined_rma": int(np.sum(stacked["status"] != 0)),
    }
