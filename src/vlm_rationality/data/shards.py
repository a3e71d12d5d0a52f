"""Prepared-sample shards: the contract between `prepare` and every later stage.

Images are stored as raw uint8 H×W×3 after the eval transform and masks bit-packed (np.packbits, big-endian
bit order), both as fixed-size binary columns: a whole column then reads as one contiguous buffer, so a
batch becomes a tensor without a per-sample Python loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from vlm_rationality.io import check_schema, with_metadata, write_parquet

SCHEMA_NAME = "prepared-samples/1"
OPTIONAL_COLUMNS: dict[str, pa.DataType] = {"caption": pa.string(), "background": pa.int32()}


def packed_mask_bytes(height: int, width: int) -> int:
    return (height * width + 7) // 8


def prepared_schema(height: int, width: int, optional: Sequence[str] = ()) -> pa.Schema:
    fields = [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("image", pa.binary(height * width * 3), nullable=False),
        pa.field("mask", pa.binary(packed_mask_bytes(height, width)), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
    for name in optional:
        if name not in OPTIONAL_COLUMNS:
            raise KeyError(f"unknown prepared-shard column {name!r}; optional columns: {', '.join(OPTIONAL_COLUMNS)}")
        fields.append(pa.field(name, OPTIONAL_COLUMNS[name]))
    return pa.schema(fields)


def _fixed_binary(array: np.ndarray, width: int) -> pa.FixedSizeBinaryArray:
    flat = np.ascontiguousarray(array, dtype=np.uint8).reshape(len(array), width)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(flat), [None, pa.py_buffer(flat.tobytes())])


def write_prepared_shard(
    path: str | os.PathLike,
    *,
    sample_ids: Sequence[str],
    labels: np.ndarray,
    images: np.ndarray,
    masks: np.ndarray,
    sources: Sequence[str],
    config_hash: str,
    extra: dict[str, Sequence] | None = None,
    skipped: dict[str, int] | None = None,
) -> None:
    """Atomically write one shard; `images` uint8 [N, H, W, 3], `masks` bool [N, H, W].

    `skipped` counts the samples of this shard's range left out as bad input, per reason; it travels
    with the shard's metadata to the score table.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    n = len(sample_ids)  # may be 0: every item of the shard's range was bad input
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != n:
        raise ValueError(f"{path}: images must be uint8 [N, H, W, 3] with N={n}, got {images.dtype} {images.shape}")
    height, width = images.shape[1:3]
    if masks.shape != (n, height, width):
        raise ValueError(f"{path}: masks must be [N, H, W] = {(n, height, width)}, got {masks.shape}")
    extra = extra or {}
    schema = prepared_schema(height, width, list(extra))
    packed = np.packbits(masks.astype(bool).reshape(n, height * width), axis=1)
    columns = [
        pa.array(sample_ids, pa.string()),
        pa.array(np.asarray(labels, dtype=np.int32)),
        _fixed_binary(images, height * width * 3),
        _fixed_binary(packed, packed_mask_bytes(height, width)),
        pa.array(sources, pa.string()),
        *(pa.array(values, OPTIONAL_COLUMNS[name]) for name, values in extra.items()),
    ]
    table = pa.Table.from_arrays(columns, schema=schema)
    write_parquet(with_metadata(table, SCHEMA_NAME, config_hash, {"image_shape": [height, width], "skipped": skipped or {}}), path)


def _column_bytes(table: pa.Table, name: str, width: int) -> np.ndarray:
    chunk = table.column(name).combine_chunks()
    data = np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=(chunk.offset + len(chunk)) * width)
    return data[chunk.offset * width :].reshape(len(chunk), width)


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
            self.sample_ids, self.labels.to(**move), self.images.to(**move), self.mask_bits.to(**move),
            self.image_shape, self.extra,
        )

    def masks(self) -> torch.Tensor:
        return unpack_masks(self.mask_bits, *self.image_shape)


def unpack_masks(bits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of np.packbits(bitorder='big') on any device: uint8 [B, nbytes] -> bool [B, H, W]."""
    shifts = torch.arange(7, -1, -1, device=bits.device, dtype=torch.uint8)
    unpacked = (bits.unsqueeze(-1) >> shifts) & 1
    return unpacked.reshape(bits.shape[0], -1)[:, : height * width].reshape(-1, height, width).bool()


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    meta = check_schema(path, SCHEMA_NAME)
    return tuple(meta["image_shape"])  # type: ignore[return-value]


def iter_batches(
    paths: Iterable[str | os.PathLike], batch_size: int, columns_extra: Sequence[str] = ()
) -> Iterator[PreparedBatch]:
    """Stream prepared shards as torch batches, in file order; pinned host memory when CUDA is present."""
    pin = torch.cuda.is_available()
    for path in paths:
        height, width = image_shape(path)
        n_image, n_mask = height * width * 3, packed_mask_bytes(height, width)
        parquet = pq.ParquetFile(path)
        wanted = ["sample_id", "label", "image", "mask", *columns_extra]
        for record_batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
            table = pa.Table.from_batches([record_batch])
            images = torch.from_numpy(_column_bytes(table, "image", n_image).reshape(-1, height, width, 3).copy())
            bits = torch.from_numpy(_column_bytes(table, "mask", n_mask).copy())
            labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
            if pin:
                images, bits, labels = images.pin_memory(), bits.pin_memory(), labels.pin_memory()
            yield PreparedBatch(
                table.column("sample_id").to_pylist(), labels, images, bits, (height, width),
                {name: table.column(name).to_pylist() for name in columns_extra},
            )


def read_prepared(path: str | os.PathLike) -> dict[str, np.ndarray | list]:
    """A whole shard in memory as numpy arrays (images uint8 [N,H,W,3], masks bool [N,H,W])."""
    height, width = image_shape(path)
    table = pq.read_table(path)
    out: dict[str, np.ndarray | list] = {
        "sample_id": table.column("sample_id").to_pylist(),
        "label": table.column("label").to_numpy().astype(np.int32),
        "image": _column_bytes(table, "image", height * width * 3).reshape(-1, height, width, 3),
        "mask": np.unpackbits(_column_bytes(table, "mask", packed_mask_bytes(height, width)), axis=1)[
            :, : height * width
        ].reshape(-1, height, width).astype(bool),
        "source": table.column("source").to_pylist(),
    }
    for name in OPTIONAL_COLUMNS:
        if name in table.column_names:
            out[name] = table.column(name).to_pylist()
    return out


def shard_paths(directory: str | os.PathLike) -> list[Path]:
    paths = sorted(Path(directory).glob("shard-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{directory}: no shard-*.parquet files; run the prepare stage first")
    return paths
