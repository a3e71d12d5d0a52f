"""Prepared shards streamed as torch batches, under a shift (the Parquet contract itself lives in artefacts.py)."""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from queue import Queue
from typing import AbstractSet, Any, Iterable, Iterator, Sequence, TypeVar

import torch

from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.data.corruptions import apply_shift, shift_to_apply

T = TypeVar("T")
PREFETCH = 2  # batches read (and corrupted) ahead of the device


@dataclass
class PreparedBatch:
    sample_ids: list[str]
    labels: torch.Tensor  # int64 [B]
    images: torch.Tensor  # uint8 [B, H, W, 3]
    mask_bits: torch.Tensor  # uint8 [B, ceil(H*W/8)]
    image_shape: tuple[int, int]
    extra: dict[str, list]

    def to(self, device: torch.device | str) -> "PreparedBatch":
        move = dict(device=device, non_blocking=True)
        return PreparedBatch(
            self.sample_ids,
            self.labels.to(**move),
            self.images.to(**move),
            self.mask_bits.to(**move),
            self.image_shape,
            self.extra,
        )

    def masks(self) -> torch.Tensor:
        return unpack_masks(self.mask_bits, *self.image_shape)

    def cue_masks(self) -> torch.Tensor:
        """bool [B, H, W]: the pixels of the dataset's spurious cue: its `cue_mask` column where the shards store one
        (a local cue, the synthetic sticker), else the background (everything off the object)."""
        if "cue_mask" not in self.extra:
            return ~self.masks()
        bits = torch.from_numpy(self.extra["cue_mask"]).to(self.mask_bits.device)
        return unpack_masks(bits, *self.image_shape)


def shared_columns(paths: Sequence[str | os.PathLike], names: Sequence[str]) -> list[str]:
    """Those of the optional columns `names` that every shard stores."""
    return [name for name in names if paths and all(name in PreparedShard(path).columns for path in paths)]


def cue_columns(paths: Sequence[str | os.PathLike]) -> list[str]:
    """["cue_mask"] where every shard stores its cue's own pixels (a local cue), else [] (the cue is the background)."""
    return shared_columns(paths, ["cue_mask"])


def _rows(batch: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    return {name: [v[k] for k in keep] if isinstance(v, list) else v[keep] for name, v in batch.items()}


def unpack_masks(bits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of np.packbits(bitorder='big') on any device: uint8 [B, nbytes] -> bool [B, H, W]."""
    shifts = torch.arange(7, -1, -1, device=bits.device, dtype=torch.uint8)
    unpacked = (bits.unsqueeze(-1) >> shifts) & 1
    return unpacked.reshape(bits.shape[0], -1)[:, : height * width].reshape(-1, height, width).bool()


def iter_batches(
    paths: Iterable[str | os.PathLike],
    batch_size: int,
    columns_extra: Sequence[str] = (),
    samples: AbstractSet[str] | None = None,
) -> Iterator[PreparedBatch]:
    """Stream prepared shards as torch batches, in file order; pinned host memory when CUDA is present. `samples`:
    only these rows (a shard that holds none of them is not read past its ids)."""
    pin = torch.cuda.is_available()
    for path in paths:
        shard = PreparedShard(path)  # opened once: its ids, then its batches
        if samples is not None and samples.isdisjoint(shard.index()["sample_id"]):
            continue
        for batch in shard.batches(batch_size, columns_extra):
            if samples is not None:
                batch = _rows(batch, [k for k, sample in enumerate(batch["sample_id"]) if sample in samples])
                if not batch["sample_id"]:
                    continue
            images = torch.from_numpy(batch["image"].copy())
            bits = torch.from_numpy(batch["mask_bits"].copy())
            labels = torch.from_numpy(batch["label"])
            if pin:
                images, bits, labels = images.pin_memory(), bits.pin_memory(), labels.pin_memory()
            yield PreparedBatch(
                batch["sample_id"],
                labels,
                images,
                bits,
                tuple(images.shape[1:3]),
                {name: batch[name] for name in columns_extra},
            )


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


@contextmanager
def batches_under_shift(
    paths: Sequence[str | os.PathLike],
    batch_size: int,
    shift: str,
    columns_extra: Sequence[str] = (),
    workers: int = 0,
    samples: AbstractSet[str] | None = None,
) -> Iterator[Iterator[PreparedBatch]]:
    """The one reader of prepared shards under a shift (explain, predict, discover, the galleries): batches in file
    order, read `PREFETCH` batches ahead of the consumer in a thread, `shift` applied where the shards were not
    prepared under it (`shift_to_apply`): in `workers` processes ahead, else in the reading thread; `samples`: only
    these rows, so a few drawn images are read and corrupted without the rest. A sample's corruption is seeded by
    its id, so where it runs, and with which others, changes nothing."""
    on_the_fly = shift_to_apply(paths, shift)
    pool = (
        ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 0 and on_the_fly != "clean" else None
    )
    try:
        batches = iter_batches(paths, batch_size, columns_extra, samples)
        yield prefetched(shifted(batches, on_the_fly, pool, workers))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
