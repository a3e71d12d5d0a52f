"""Training splits in memory as uint8 tensors, with seeded shuffling.

The synthetic and fixture splits are small; batches are preprocessed on the training device, so the host
only holds uint8 images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from vlm_rationality.data.shards import iter_batches


@dataclass
class TrainingSplit:
    images: torch.Tensor  # uint8 [N, S, S, 3]
    labels: torch.Tensor  # int64 [N]
    captions: list[str] | None
    sample_ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Index batches of one shuffled epoch (the last, smaller batch is kept)."""
        order = torch.randperm(len(self), generator=generator)
        yield from order.split(batch_size)


def load_split(paths: Sequence[str | os.PathLike], with_captions: bool = False) -> TrainingSplit:
    images, labels, captions, sample_ids = [], [], [], []
    for batch in iter_batches(paths, 4096, ("caption",) if with_captions else ()):
        images.append(batch.images)
        labels.append(batch.labels)
        sample_ids += batch.sample_ids
        captions += batch.extra.get("caption", [])
    if not labels:
        raise ValueError(f"no training samples in {', '.join(map(str, paths))}")
    if with_captions and any(c is None for c in captions):
        raise ValueError("pretraining needs a caption for every sample; this dataset has none")
    return TrainingSplit(torch.cat(images), torch.cat(labels), captions if with_captions else None, sample_ids)
