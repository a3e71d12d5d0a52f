"""Training splits: labels, ids and captions in memory; the images in memory, or streamed from their shards.

A split whose pixels fit `training_data.in_memory_mb` is held as one uint8 tensor and shuffled exactly (batches
are preprocessed on the training device, so the host only holds uint8 images). A larger one (ImageNet-1K train:
1.28 M images, about 190 GB at 224) is streamed: each epoch shuffles the shards' row groups, and the rows within
windows of `training_data.window` row groups, so at most three windows are decoded at once (the one being read
from, the one a batch may straddle into, the one read ahead in a thread) whatever the split's size. Under
torchrun each rank is dealt its own row groups and reads only those; the ranks with more rows than batches ask
of them hand the surplus of the epoch's last window to the others, the one place a rank reads another's groups.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.finetune.distributed import world
from vlm_rationality.plan.sizing import MiB


class StreamedImages:
    """uint8 [N, H, W, 3] images of prepared shards, decoded one row group (a block) at a time when first asked
    for, and kept until `retain` lets them go."""

    def __init__(self, block_rows: Sequence[tuple[str, int, int]], image_shape: tuple[int, int, int]) -> None:
        self.blocks = list(block_rows)  # (path, row group, rows)
        self.starts = np.cumsum([0] + [rows for _, _, rows in self.blocks])
        self.shape = (int(self.starts[-1]), *image_shape)
        self._held: OrderedDict[int, Future] = OrderedDict()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")

    def __len__(self) -> int:
        return self.shape[0]

    def block_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, rows, side="right") - 1

    def _load(self, block: int) -> np.ndarray:
        path, group, _ = self.blocks[block]  # opened per block: readers of every shard held open cost more memory
        return PreparedShard(path).images(group)  # than the shuffle window's blocks (test_streaming)

    def read_ahead(self, blocks: Sequence[int]) -> None:
        """Start decoding `blocks` in the background thread, so they are ready when a batch needs them."""
        for block in blocks:
            if block not in self._held:
                self._held[block] = self._reader.submit(self._load, block)

    def retain(self, blocks: set[int]) -> None:
        """Let every held block but `blocks` go (memory stays bounded by what the shuffle window needs)."""
        for block in [b for b in self._held if b not in blocks]:
            del self._held[block]

    def __getitem__(self, index: int | torch.Tensor) -> torch.Tensor:
        rows = np.atleast_1d(np.asarray(index, dtype=np.int64))
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        blocks = self.block_of(rows)
        for block in np.unique(blocks):
            self.read_ahead([int(block)])
            at = blocks == block
            out[at] = self._held[int(block)].result()[rows[at] - self.starts[block]]
        images = torch.from_numpy(out)
        return images[0] if np.ndim(index) == 0 else images


def streamed_order(
    block_sizes: Sequence[int],
    window: int,
    batch_size: int,
    generator: torch.Generator,
    rank: int = 0,
    ranks: int = 1,
) -> tuple[list[torch.Tensor], list[list[int]]]:
    """One epoch of global batches over blocks of rows (row `i` of block `b` is `sum(block_sizes[:b]) + i`), and for
    each batch the blocks this rank holds while it is trained on, in the order they are needed.

    Blocks are shuffled and cut into windows of `window`; each window's blocks are dealt to the ranks in turn and
    each rank's rows of a window shuffled. A global batch is every rank's next rows, in `distributed.share` order,
    so rank r's share of every batch comes from its own blocks (balancing at the epoch's end aside).
    """
    starts = np.cumsum([0, *block_sizes])
    order = torch.randperm(len(block_sizes), generator=generator).tolist()
    windows = [order[i : i + window] for i in range(0, len(order), window)]
    window_of = {b: w for w, blocks in enumerate(windows) for b in blocks}
    streams: list[list[int]] = []
    for r in range(ranks):
        stream: list[int] = []
        for blocks in windows:
            rows = [row for b in blocks[r::ranks] for row in range(starts[b], starts[b + 1])]
            stream += [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
        streams.append(stream)
    shares = [torch.arange(len(b)).tensor_split(ranks) for b in torch.arange(int(starts[-1])).split(batch_size)]
    wanted = [sum(len(share[r]) for share in shares) for r in range(ranks)]
    surplus = [row for r in range(ranks) for row in streams[r][wanted[r] :]]
    for r in range(ranks):
        del streams[r][wanted[r] :]
        need = wanted[r] - len(streams[r])
        streams[r] += surplus[:need]
        del surplus[:need]
    batches, held, at = [], [], [0] * ranks
    for share in shares:
        parts = [streams[r][at[r] : at[r] + len(share[r])] for r in range(ranks)]
        at = [at[r] + len(share[r]) for r in range(ranks)]
        batches.append(torch.tensor([row for part in parts for row in part], dtype=torch.int64))
        mine = dict.fromkeys((np.searchsorted(starts, parts[rank], side="right") - 1).tolist())
        span = [window_of[b] for b in mine] or [0]
        ahead = [b for w in range(min(span), max(span) + 2) if w < len(windows) for b in windows[w][rank::ranks]]
        held.append(list(dict.fromkeys([*mine, *ahead])))
    return batches, held


@dataclass(frozen=True)
class Streaming:
    """`training_data` of the config: a split over `in_memory_mb` of pixels is streamed, shuffled in windows of
    `window` row groups."""

    in_memory_mb: float
    window: int

    def __post_init__(self) -> None:
        if self.in_memory_mb < 0 or self.window < 1:
            raise ValueError(f"training_data needs in_memory_mb >= 0 and window >= 1, got {self}")


@dataclass
class TrainingSplit:
    images: torch.Tensor | StreamedImages  # uint8 [N, S, S, 3]
    labels: torch.Tensor  # int64 [N]
    captions: list[str] | None
    sample_ids: list[str]
    window: int = 0  # row groups shuffled together, when streamed

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def streamed(self) -> bool:
        return isinstance(self.images, StreamedImages)

    def batches(
        self, batch_size: int, generator: torch.Generator, weights: torch.Tensor | None = None
    ) -> Iterator[torch.Tensor]:
        """Index batches of one shuffled epoch (the last, smaller batch is kept); with `weights`, an epoch of as many
        draws with replacement, each sample drawn in proportion to its weight (an upsampling sampler)."""
        if weights is not None:
            if isinstance(self.images, StreamedImages):
                raise ValueError("a weighted sampler draws from the whole split: raise training_data.in_memory_mb")
            yield from torch.multinomial(weights, len(self), replacement=True, generator=generator).split(batch_size)
            return
        if not isinstance(self.images, StreamedImages):
            yield from torch.randperm(len(self), generator=generator).split(batch_size)
            return
        sizes = [rows for _, _, rows in self.images.blocks]
        batches, held = streamed_order(sizes, self.window, batch_size, generator, *world())
        for index, blocks in zip(batches, held):
            self.images.retain(set(blocks))
            self.images.read_ahead(blocks)
            yield index
        self.images.retain(set())


def load_split(
    paths: Sequence[str | os.PathLike],
    with_captions: bool = False,
    streaming: Streaming | None = None,
) -> TrainingSplit:
    """A split's labels, ids (and captions) in memory; its images too, unless `streaming` says they are too many."""
    labels, captions, sample_ids, blocks = [], [], [], []
    for path in paths:
        index = PreparedShard(path).index(("caption",) if with_captions else ())
        labels.append(index["label"])
        sample_ids += index["sample_id"]
        captions += index.get("caption", [])
        blocks += [(os.fspath(path), group, rows) for group, rows in enumerate(index["row_groups"]) if rows]
    if not sample_ids:
        raise ValueError(f"no training samples in {', '.join(map(str, paths))}")
    if with_captions and any(c is None for c in captions):
        raise ValueError("pretraining needs a caption for every sample; this dataset has none")
    images: torch.Tensor | StreamedImages
    if streaming is None or len(sample_ids) * np.prod(index["image_shape"]) <= streaming.in_memory_mb * MiB:
        images = torch.from_numpy(np.concatenate([PreparedShard(path).images(group) for path, group, _ in blocks]))
    else:
        images = StreamedImages(blocks, index["image_shape"])
    return TrainingSplit(
        images,
        torch.from_numpy(np.concatenate(labels)),
        captions if with_captions else None,
        sample_ids,
        streaming.window if streaming else 0,
    )
