"""Prepared shards streamed as torch batches (the Parquet contract itself lives in artefacts.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from vlm_rationality.artefacts import read_prepared_batches


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


def unpack_masks(bits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of np.packbits(bitorder='big') on any device: uint8 [B, nbytes] -> bool [B, H, W]."""
    shifts = torch.arange(7, -1, -1, device=bits.device, dtype=torch.uint8)
    unpacked = (bits.unsqueeze(-1) >> shifts) & 1
    return unpacked.reshape(bits.shape[0], -1)[:, : height * width].reshape(-1, height, width).bool()


def iter_batches(
    paths: Iterable[str | os.PathLike], batch_size: int, columns_extra: Sequence[str] = ()
) -> Iterator[PreparedBatch]:
    """Stream prepared shards as torch batches, in file order; pinned host memory when CUDA is present."""
    pin = torch.cuda.is_available()
    for path in paths:
        for batch in read_prepared_batches(path, batch_size, columns_extra):
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
