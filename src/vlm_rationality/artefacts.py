"""The Parquet contracts between stages: prepared samples, heatmaps and rationality metrics.

Each artefact's schema, writer and reader live here, and every stage imports them downward; nothing here
imports torch or a stage, so a reader can open any artefact without the ML stack. Files carry their schema
name and the hash of the settings that made them (see io.py), and are written atomically.

- items: a split's index, listed once: sample id, label, image path and annotation (JSON: a path under the
  root, or keys into an annotation file), one row group per prepare shard;
- prepared samples: uint8 H×W×3 images after the eval transform and bit-packed masks (np.packbits, big-endian
  bit order), as fixed-size binary columns, so a whole column reads as one contiguous buffer;
- heatmaps: per sample the label, prediction, float16 logits, the float16 patch-grid heatmap, RMA and why RMA
  is undefined where it is; its (dataset, shift, model, method, heatmap_method), in the metadata and as a column
  each (so a glob over the files reads as one table: docs/outputs.md);
- predictions: float32 logits of one (dataset, model, method) on every evaluation set the robustness metrics
  read (the validation split, the test split under each shift, OOD and cue-conflict splits), a `set` column
  naming which; the label (-1 for an OOD sample) and, where the split has one, the background's class; its
  (dataset, model, method) as columns;
- metrics: one row per (dataset, shift, model, method, heatmap_method); robustness metrics: one row per
  (dataset, shift, model, method);
- discovery regions: RaVL's regions of one (dataset, model, method) on the scored split: image, box, what the
  region shows (object, background or grid cell, and which), its cluster and rank in the top cluster; the file's
  metadata holds the discovery summary and the clusters (each one's medoid region, the candidates ranked by gap);
  discovery metrics: one summary row per (dataset, model, method);
- training regions: the regions of a training split, each assigned to the nearest medoid of one discovery (RaVL's
  Stage 2 reads which are spurious); the metadata holds the discovery's ranked candidates;
- twins: per scored sample of one (dataset, model, method) the prediction on the image, on each counterfactual twin
  (the object on another background), on the background alone and on the object alone, which twins show the
  background the sample's class is tied to and the class each twin's cue pulls towards; its (dataset, model, method)
  as columns; validity metrics: one row per (dataset, model, method, heatmap method, signal, mask variant, truth).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from vlm_rationality.io import (
    atomic_path,
    check_schema,
    parquet_file,
    read_table,
    reading,
    with_metadata,
    write_parquet,
)

ITEMS = "items/1"
PREPARED = "prepared-samples/1"
HEATMAPS = "heatmaps/3"
METRICS = "rationality-metrics/2"
PREDICTIONS = "predictions/2"
ROBUSTNESS = "robustness-metrics/1"
ID_OOD = (
    "id-ood/1"  # per metric: the probit-space line of ID accuracy against it across classifiers (metrics/id_ood.py)
)
DISCOVERY_REGIONS = "discovery-regions/2"  # 2: the clusters (medoids, ranked candidates) in the metadata
TRAINING_REGIONS = "training-regions/1"
DISCOVERY = "discovery-metrics/1"
TWINS = "twins/2"  # 2: the class each twin's cue pulls towards; the prediction on the object alone
THRESHOLDS = "threshold-curves/1"  # PT and IR on a grid of RMA thresholds (metrics/thresholds.py)
PER_CLASS = "per-class-metrics/1"  # accuracy, PT and IR per class at the configured threshold
FACTORS = "factor-metrics/1"  # accuracy, error ratio, PT, IR (and PT*) per visual factor (metrics/factors.py)
VALIDITY = "validity-metrics/2"  # 2: one row per signal and truth, within-class AUROC, the gain beyond confidence

OPTIONAL_COLUMNS: dict[str, pa.DataType] = {"caption": pa.string(), "background": pa.int32(), "cue_mask": pa.binary()}
# Optional columns that hold a mask of the image (bool [H, W]), stored packed as the object mask is: `cue_mask`, the
# exact pixels of a dataset's spurious cue where it is local (the synthetic sticker).
MASK_COLUMNS = ("cue_mask",)
# Why a sample's RMA is undefined; the heatmap file stores an index into this tuple (0 = defined).
RMA_OK = "ok"
UNDEFINED_RMA = ("empty_mask", "nonfinite_heatmap", "zero_mass", "constant_heatmap")
RMA_STATUSES = (RMA_OK, *UNDEFINED_RMA)
# `pred` of a sample whose logits are not all finite: no prediction, never equal to a label.
NO_PREDICTION = -1
# What identifies a heatmap file's rows, and so a row of the metrics table.
HEATMAP_KEYS = ("dataset", "shift", "model", "method", "heatmap_method")


def _fixed_binary(array: np.ndarray, width: int) -> pa.FixedSizeBinaryArray:
    flat = np.ascontiguousarray(array, dtype=np.uint8).reshape(len(array), width)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(flat), [None, pa.py_buffer(flat.tobytes())])


def _column_bytes(table: pa.Table | pa.RecordBatch, name: str, width: int) -> np.ndarray:
    column = table.column(name)
    chunk = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    data = np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=(chunk.offset + len(chunk)) * width)
    return data[chunk.offset * width :].reshape(len(chunk), width)


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _matrix(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    """A fixed-size list column as [rows, width] (width 0 for an empty table)."""
    values = np.asarray(table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype)
    return values.reshape(table.num_rows, -1) if table.num_rows else values.reshape(0, 0)


KEY_TYPE = pa.dictionary(pa.int8(), pa.string())


def _key_columns(table: pa.Table, keys: dict[str, str], names: Sequence[str]) -> pa.Table:
    """`table` with a column per name, each row the file's key (dictionary-encoded: a few bytes per file), so that
    a glob over a stage's files (pandas, polars, DuckDB) reads as one table whose rows say what they are."""
    n = table.num_rows
    for name in names:
        if name not in keys:
            raise ValueError(f"the keys {keys} lack {name!r}")
        column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([keys[name]], pa.string()))
        table = table.append_column(pa.field(name, KEY_TYPE, nullable=False), column)
    return table


# Items -----------------------------------------------------------------------------------------------------


def write_items(
    path: str | os.PathLike,
    *,
    sample_ids: Sequence[str],
    labels: Sequence[int],
    images: Sequence[str],
    annotations: Sequence[str],
    shard_size: int,
    config_hash: str,
) -> None:
    """A split's item index; a row group per `shard_size` items, so a prepare job reads its shard's rows alone."""
    table = pa.table(
        {
            "sample_id": pa.array(sample_ids, pa.string()),
            "label": pa.array(labels, pa.int32()),
            "image": pa.array(images, pa.string()),
            "annotation": pa.array(annotations, pa.string()),
        }
    )
    write_parquet(with_metadata(table, ITEMS, config_hash), path, row_group_size=shard_size)


def item_count(path: str | os.PathLike) -> int:
    check_schema(path, ITEMS)
    with reading(path):
        return parquet_file(path).metadata.num_rows


def read_items(path: str | os.PathLike, start: int, stop: int) -> dict[str, list]:
    """Rows start … stop-1 of an item index, reading only the row groups that hold them."""
    check_schema(path, ITEMS)
    with reading(path):
        handle = parquet_file(path)
        groups, first, offset = [], None, 0
        for index in range(handle.metadata.num_row_groups):
            rows = handle.metadata.row_group(index).num_rows
            if offset < stop and offset + rows > start:
                groups.append(index)
                first = offset if first is None else first
            offset += rows
        if not groups:
            return {name: [] for name in ("sample_id", "label", "image", "annotation")}
        table = handle.read_row_groups(groups).slice(start - first, stop - start)
    return table.to_pydict()


# Prepared samples ------------------------------------------------------------------------------------------


def packed_mask_bytes(height: int, width: int) -> int:
    return (height * width + 7) // 8


def _packed(masks: Sequence[np.ndarray]) -> list[bytes]:
    return [np.packbits(np.asarray(mask, bool).reshape(-1)).tobytes() for mask in masks]


def _mask_bits(packed: Sequence[bytes], height: int, width: int) -> np.ndarray:
    """An optional mask column's values (packed bytes per row) -> uint8 [N, nbytes], as the `mask` column reads."""
    return np.frombuffer(bytearray(b"".join(packed)), np.uint8).reshape(len(packed), packed_mask_bytes(height, width))


def _optional(table: pa.Table | pa.RecordBatch, name: str, height: int, width: int) -> list | np.ndarray:
    values = table.column(name).to_pylist()
    return _mask_bits(values, height, width) if name in MASK_COLUMNS else values


def bits_to_masks(bits: np.ndarray, height: int, width: int) -> np.ndarray:
    """Packed mask rows uint8 [N, nbytes] -> bool [N, H, W]."""
    return np.unpackbits(bits, axis=1)[:, : height * width].reshape(-1, height, width).astype(bool)


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
    shift: str = "clean",
    mask: str = "exact",
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    position: tuple[int, int, int] | None = None,
    sticker_missing: int = 0,
) -> None:
    """Atomically write one shard; `images` uint8 [N, H, W, 3], `masks` bool [N, H, W].

    `skipped` counts the samples of this shard's range left out as bad input, per reason; it travels
    with the shard's metadata to the score table. `shift`: the images are already under this shift (read from
    pre-rendered ImageNet-C), which the metadata records so that no stage applies it again. `mask`: the tolerance
    the masks were loosened by (masks.py), recorded where it is not `exact`. `split`: recorded, so a job can
    refuse a shard of another split (`check_prepared`). `class_names`: the dataset's, in label order, so a reader
    (`inspect`) names classes rather than numbering them. `position`: (shard index, first and past-the-last row of
    the item index it was made from), recorded so a job refuses a shard copied over another (`check_prepared`).
    `sticker_missing`: how many samples were drawn to carry the synthetic sticker but have none (no place fits it).
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
    packed = np.packbits(masks.astype(bool).reshape(n, height * width), axis=1)
    columns = [
        pa.array(sample_ids, pa.string()),
        pa.array(np.asarray(labels, dtype=np.int32)),
        _fixed_binary(images, height * width * 3),
        _fixed_binary(packed, packed_mask_bytes(height, width)),
        pa.array(sources, pa.string()),
        *(
            pa.array(_packed(values) if name in MASK_COLUMNS else values, OPTIONAL_COLUMNS[name])
            for name, values in extra.items()
        ),
    ]
    table = pa.Table.from_arrays(columns, schema=prepared_schema(height, width, list(extra)))
    meta = {
        "image_shape": [height, width],
        "skipped": skipped or {},
        **({"shift": shift} if shift != "clean" else {}),
        **({"mask": mask} if mask != "exact" else {}),
        **({"split": split} if split is not None else {}),
        **({"class_names": list(class_names)} if class_names is not None else {}),
        **({"shard": position[0], "rows": list(position[1:])} if position is not None else {}),
        **({"sticker_missing": int(sticker_missing)} if sticker_missing else {}),
    }
    write_parquet(with_metadata(table, PREPARED, config_hash, meta), path)


def check_prepared(paths: Sequence[str | os.PathLike], expected: dict[str, str]) -> None:
    """Every prepared shard a job reads comes from a split the plan names (`expected`: split -> the hash of the
    config it is prepared with), sits where it was made, and no sample comes twice. A shard copied in from another
    split, or over another shard of the same split, or left over from another config where Snakemake could not tell
    (results copied without .snakemake/), would be read as if it were the plan's: the same samples scored twice."""
    held: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (split, shift) -> (sample, shard)s
    for path in dict.fromkeys(map(str, paths)):  # a shard named twice (in two of a job's lists) is read once
        shard = PreparedShard(path)
        meta = shard.meta
        split, found = meta.get("split"), str(meta.get("config_hash"))
        if split is not None and split not in expected:
            raise ValueError(
                f"{path} holds split {split!r}, but this job reads {' or '.join(map(repr, expected))}: "
                "a shard copied from another split? delete it and rerun (Snakemake prepares it again)"
            )
        if found not in expected.values():
            raise ValueError(
                f"{path} was prepared with another config (hash {found}; the plan's is "
                f"{' or '.join(expected.values())}): delete it and rerun, or rerun with "
                "--forcerun prepare; Snakemake misses a config change when results/ was copied without "
                ".snakemake/"
            )
        named = re.fullmatch(r"shard-(\d+)\.parquet", Path(path).name)
        if "shard" in meta and named and int(named.group(1)) != int(meta["shard"]):
            first, stop = meta["rows"]
            raise ValueError(
                f"{path} holds shard {meta['shard']} (items {first}-{stop - 1} of split {split!r}), not shard "
                f"{named.group(1)}: a shard copied over another? delete it and rerun (Snakemake prepares it again)"
            )
        ids = shard.index()["sample_id"]
        held[(str(split), str(meta.get("shift", "clean")))] += [(sample, path) for sample in ids]
    for (split, _), rows in held.items():
        repeated = first_repeat([sample for sample, _ in rows])
        if repeated is not None:
            first, again = [path for sample, path in rows if sample == repeated][:2]
            raise ValueError(
                f"sample {repeated!r} of split {split!r} is in {first} and again in {again}: a shard copied over "
                "another? delete the later one and rerun (Snakemake prepares it again)"
            )


def first_repeat(sample_ids: Sequence[str]) -> str | None:
    """The first sample id that comes a second time, or None: every file holds a sample once, and a job reads each
    sample once (a file copied over another would count its samples twice in every rate)."""
    seen: set[str] = set()
    for sample in sample_ids:
        if sample in seen:
            return sample
        seen.add(sample)
    return None


class PreparedShard:
    """A prepared shard, opened once: its schema checked and every page verified, its metadata and footer read
    once; then what a reader needs of it, by method (the index without pixels, batches, one row group's images, the
    whole shard, the cue columns). Every stage reads prepared shards through it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self.meta = check_schema(path, PREPARED)  # fails clearly on any other file, or a damaged one
        self.height, self.width = self.meta["image_shape"]
        with reading(path):
            self._file = parquet_file(path)

    @property
    def columns(self) -> list[str]:
        return self._file.schema_arrow.names

    @property
    def rows(self) -> int:
        return self._file.metadata.num_rows

    def _read(self, columns: Sequence[str] | None = None) -> pa.Table:
        with reading(self.path):
            return self._file.read(columns=None if columns is None else list(columns))

    def index(self, columns_extra: Sequence[str] = ()) -> dict[str, Any]:
        """The shard without its pixels: sample_id, label int64, any optional columns asked for, the rows of each row
        group (`row_groups`) and `image_shape`, so a training split can be indexed before any image is read."""
        table = self._read(["sample_id", "label", *columns_extra])
        metadata = self._file.metadata
        return {
            "sample_id": table.column("sample_id").to_pylist(),
            "label": table.column("label").to_numpy().astype(np.int64),
            "row_groups": [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)],
            "image_shape": (self.height, self.width, 3),
            **{name: table.column(name).to_pylist() for name in columns_extra},
        }

    def batches(self, batch_size: int, columns_extra: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Batches of numpy arrays: sample_id (list), label int64 [B], image uint8 [B, H, W, 3], mask_bits uint8
        [B, ceil(H·W/8)] and any optional columns asked for (lists; a mask column packed as mask_bits)."""
        n_image, n_mask = self.height * self.width * 3, packed_mask_bytes(self.height, self.width)
        wanted = ["sample_id", "label", "image", "mask", *columns_extra]
        with reading(self.path):
            batches = self._file.iter_batches(batch_size=batch_size, columns=wanted)
        while True:
            with reading(self.path):  # damage in the middle of a file shows up only when its pages are read
                batch = next(batches, None)
            if batch is None:
                return
            yield {
                "sample_id": batch.column("sample_id").to_pylist(),
                "label": batch.column("label").to_numpy().astype(np.int64),
                "image": _column_bytes(batch, "image", n_image).reshape(-1, self.height, self.width, 3),
                "mask_bits": _column_bytes(batch, "mask", n_mask),
                **{name: _optional(batch, name, self.height, self.width) for name in columns_extra},
            }

    def images(self, row_group: int) -> np.ndarray:
        """The images of one row group, uint8 [rows, H, W, 3]."""
        with reading(self.path):
            table = self._file.read_row_group(row_group, columns=["image"])
        return _column_bytes(table, "image", self.height * self.width * 3).reshape(-1, self.height, self.width, 3)

    def read(self) -> dict[str, np.ndarray | list]:
        """The whole shard in memory as numpy arrays (images uint8 [N,H,W,3], masks bool [N,H,W])."""
        height, width = self.height, self.width
        table = self._read()
        out: dict[str, np.ndarray | list] = {
            "sample_id": table.column("sample_id").to_pylist(),
            "label": table.column("label").to_numpy().astype(np.int32),
            "image": _column_bytes(table, "image", height * width * 3).reshape(-1, height, width, 3),
            "mask": bits_to_masks(_column_bytes(table, "mask", packed_mask_bytes(height, width)), height, width),
            "source": table.column("source").to_pylist(),
        }
        for name in OPTIONAL_COLUMNS:
            if name in table.column_names:
                values = _optional(table, name, height, width)
                out[name] = bits_to_masks(values, height, width) if name in MASK_COLUMNS else values
        return out

    def backgrounds(self) -> dict[str, int]:
        """sample_id -> the background class, where the split records one (the synthetic benchmark)."""
        table = self._read(["sample_id", "background"])
        return dict(zip(table.column("sample_id").to_pylist(), table.column("background").to_pylist()))

    def cue_present(self) -> dict[str, bool]:
        """sample_id -> whether the image carries its dataset's local cue (a non-empty `cue_mask`: the sticker)."""
        table = self._read(["sample_id", "cue_mask"])
        present = [any(packed) for packed in table.column("cue_mask").to_pylist()]
        return dict(zip(table.column("sample_id").to_pylist(), present))


def shard_paths(directory: str | os.PathLike) -> list[Path]:
    paths = sorted(Path(directory).glob("shard-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{directory}: no shard-*.parquet files; run the prepare stage first")
    return paths


# Heatmaps --------------------------------------------------------------------------------------------------


def heatmap_schema(num_classes: int, grid_cells: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("label", pa.int32(), nullable=False),
            pa.field("pred", pa.int32(), nullable=False),
            pa.field("logits", pa.list_(pa.float16(), num_classes), nullable=False),
            pa.field("heatmap", pa.list_(pa.float16(), grid_cells), nullable=False),
            pa.field("rma", pa.float32()),
            pa.field("rma_status", pa.dictionary(pa.int8(), pa.string()), nullable=False),
            pa.field("explained_class", pa.int32(), nullable=False),
            pa.field("cue_rma", pa.float32()),
        ]
    )


def write_heatmap_shard(
    path: str | os.PathLike,
    *,
    sample_ids: Sequence[str],
    labels: np.ndarray,
    preds: np.ndarray,
    logits: np.ndarray,
    heatmaps: np.ndarray,
    rma: np.ndarray,
    rma_status: np.ndarray,
    explained_class: np.ndarray,
    cue_rma: np.ndarray,
    keys: dict[str, str],
    config_hash: str,
    meta: dict[str, Any],
) -> None:
    """Atomically write one heatmap file: `preds` from the full-precision logits (NO_PREDICTION where they are
    not all finite), `logits` [N, C] (stored as float16), `heatmaps` [N, gh·gw], `rma_status` indices into
    RMA_STATUSES, `cue_rma` the relevance mass on the cue's own pixels (NaN where undefined, e.g. no sticker in the
    image); `keys` (dataset, shift, model, method, heatmap_method) name what the rows are."""
    missing = [key for key in HEATMAP_KEYS if key not in keys]
    if missing:
        raise ValueError(f"{path}: heatmap keys lack {', '.join(missing)}")
    table = pa.Table.from_arrays(
        [
            pa.array(sample_ids, pa.string()),
            pa.array(np.asarray(labels, np.int32)),
            pa.array(np.asarray(preds, np.int32)),
            _fixed_list(np.asarray(logits, np.float16)),
            _fixed_list(np.asarray(heatmaps, np.float16)),
            pa.array(np.asarray(rma, np.float32), pa.float32()),
            pa.DictionaryArray.from_arrays(
                pa.array(np.asarray(rma_status, np.int8), pa.int8()), pa.array(RMA_STATUSES)
            ),
            pa.array(np.asarray(explained_class, np.int32)),
            pa.array(np.asarray(cue_rma, np.float32), pa.float32()),
        ],
        schema=heatmap_schema(np.shape(logits)[1], np.shape(heatmaps)[1]),
    )
    table = _key_columns(table, keys, HEATMAP_KEYS)
    write_parquet(with_metadata(table, HEATMAPS, config_hash, {**meta, "keys": keys}), path)


def read_heatmaps(path: str | os.PathLike, columns: Sequence[str]) -> tuple[dict[str, Any], pa.Table]:
    """(metadata, the asked-for columns) of a heatmap file, failing clearly on a stale or foreign file."""
    meta = check_schema(path, HEATMAPS)
    missing = [key for key in HEATMAP_KEYS if key not in meta.get("keys", {})]
    if missing:
        raise ValueError(f"{path}: heatmap metadata lacks {', '.join(missing)}; delete it and rerun the explain stage")
    with reading(path):
        return meta, read_table(path, columns=list(columns))


# Predictions -----------------------------------------------------------------------------------------------


def write_predictions(
    path: str | os.PathLike,
    *,
    sets: Sequence[str],
    sample_ids: Sequence[str],
    labels: np.ndarray,
    backgrounds: Sequence[int | None],
    logits: np.ndarray,
    cosines: np.ndarray,
    config_hash: str,
    meta: dict[str, Any],
) -> None:
    """Logits [N, C] stored as float32, so calibration and OOD scores read what the model computed (the heatmap
    files' float16 rounds a logit of a scale-100 head by up to 0.016 once |logit| ≥ 32); `cosines` [N, C], each
    image's cosine to each class prompt (MCM's score)."""
    table = pa.Table.from_arrays(
        [
            pa.array(sets, pa.string()),
            pa.array(sample_ids, pa.string()),
            pa.array(np.asarray(labels, np.int32)),
            pa.array(list(backgrounds), pa.int32()),
            _fixed_list(np.asarray(logits, np.float32)),
            _fixed_list(np.asarray(cosines, np.float32)),
        ],
        schema=pa.schema(
            [
                pa.field("set", pa.string(), nullable=False),
                pa.field("sample_id", pa.string(), nullable=False),
                pa.field("label", pa.int32(), nullable=False),
                pa.field("background", pa.int32()),
                pa.field("logits", pa.list_(pa.float32(), int(np.shape(logits)[1])), nullable=False),
                pa.field("cosines", pa.list_(pa.float32(), int(np.shape(cosines)[1])), nullable=False),
            ]
        ),
    )
    table = _key_columns(table, meta["keys"], ("dataset", "model", "method"))
    write_parquet(with_metadata(table, PREDICTIONS, config_hash, meta), path)


def read_predictions(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(metadata, set -> {label, background, logits [N, C], cosines [N, C]}) of a predictions file."""
    meta = check_schema(path, PREDICTIONS)
    with reading(path):
        table = read_table(path)
    sets = np.asarray(table.column("set").to_pylist())

    logits, cosines = _matrix(table, "logits", np.float32), _matrix(table, "cosines", np.float32)
    labels = table.column("label").to_numpy()
    background = np.asarray([-1 if b is None else b for b in table.column("background").to_pylist()], np.int64)
    return meta, {
        name: {
            "label": labels[sets == name],
            "background": background[sets == name],
            "logits": logits[sets == name],
            "cosines": cosines[sets == name],
        }
        for name in dict.fromkeys(sets.tolist())
    }


# Twins -----------------------------------------------------------------------------------------------------


def write_twins(
    path: str | os.PathLike,
    *,
    sample_ids: Sequence[str],
    labels: np.ndarray,
    preds: np.ndarray,
    twin_preds: np.ndarray,
    same_class: np.ndarray,
    cue_class: np.ndarray,
    alone_preds: np.ndarray,
    object_preds: np.ndarray,
    config_hash: str,
    meta: dict[str, Any],
) -> None:
    """One twins file: `preds` [N], `twin_preds` [N, K], `alone_preds` and `object_preds` [N] (NO_PREDICTION where
    the logits are not all finite), `same_class` bool [N, K], `cue_class` int [N, K] (-1: the twin's cue names no
    class); `meta["keys"]` names the (dataset, model, method)."""
    twin_preds, same_class = np.asarray(twin_preds, np.int32), np.asarray(same_class, bool)
    count = twin_preds.shape[1] if twin_preds.ndim == 2 else 0

    def per_twin(values: np.ndarray, kind: pa.DataType) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), kind), count)

    columns = {
        "sample_id": pa.array(sample_ids, pa.string()),
        "label": pa.array(np.asarray(labels, np.int32)),
        "pred": pa.array(np.asarray(preds, np.int32)),
        "twin_pred": per_twin(twin_preds, pa.int32()),
        "twin_same_class": per_twin(same_class, pa.bool_()),
        "twin_cue_class": per_twin(np.asarray(cue_class, np.int32), pa.int32()),
        "alone_pred": pa.array(np.asarray(alone_preds, np.int32)),
        "object_pred": pa.array(np.asarray(object_preds, np.int32)),
    }
    table = pa.Table.from_arrays(
        list(columns.values()),
        schema=pa.schema([pa.field(name, array.type, nullable=False) for name, array in columns.items()]),
    )
    table = _key_columns(table, meta["keys"], ("dataset", "model", "method"))
    write_parquet(with_metadata(table, TWINS, config_hash, meta), path)


def read_twins(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, columns as numpy: sample_id list, label, pred, twin_pred [N, K], twin_same_class [N, K],
    twin_cue_class [N, K], alone_pred, object_pred)."""
    meta = check_schema(path, TWINS)
    with reading(path):
        table = read_table(path)

    return meta, {
        "sample_id": table.column("sample_id").to_pylist(),
        "label": table.column("label").to_numpy(),
        "pred": table.column("pred").to_numpy(),
        "twin_pred": _matrix(table, "twin_pred", np.int32),
        "twin_same_class": _matrix(table, "twin_same_class", bool),
        "twin_cue_class": _matrix(table, "twin_cue_class", np.int32),
        "alone_pred": table.column("alone_pred").to_numpy(),
        "object_pred": table.column("object_pred").to_numpy(),
    }


# Metrics ---------------------------------------------------------------------------------------------------


def write_metrics(
    table: pa.Table,
    parquet_path: str | os.PathLike,
    csv_path: str | os.PathLike,
    config_hash: str,
    schema: str = METRICS,
) -> None:
    """A metrics table as Parquet (stamped `schema`: the rationality or the robustness table) and CSV."""
    write_parquet(with_metadata(table, schema, config_hash), parquet_path)
    with atomic_path(csv_path) as tmp:
        pacsv.write_csv(table, tmp)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    check_schema(path, METRICS)
    with reading(path):
        return read_table(path).to_pylist()


# Discovery -------------------------------------------------------------------------------------------------


def _region_table(regions: dict[str, list], extra: dict[str, pa.DataType]) -> pa.Table:
    columns = {
        "sample_id": pa.array(regions["sample_id"], pa.string()),
        "kind": pa.array(regions["kind"], pa.string()),
        "feature": pa.array(regions["feature"], pa.int32()),
        "box": pa.array(regions["box"], pa.list_(pa.int32(), 4)),
        "cluster": pa.array(regions["cluster"], pa.int32()),
    }
    return pa.table({**columns, **{name: pa.array(regions[name], kind) for name, kind in extra.items()}})


def write_discovery(
    path: str | os.PathLike,
    regions: dict[str, list],
    summary: dict[str, Any],
    clusters: dict[str, list],
    keys: dict[str, str],
    config_hash: str,
) -> None:
    table = _region_table(regions, {"image": pa.int32(), "rank": pa.int32()})
    write_parquet(
        with_metadata(table, DISCOVERY_REGIONS, config_hash, {"keys": keys, "summary": summary, "clusters": clusters}),
        path,
    )


def read_discovery_regions(path: str | os.PathLike) -> tuple[dict[str, list], dict[str, list], dict[str, Any]]:
    """(the region table's columns, the clusters: {medoids: region row per cluster, ranked: candidate clusters},
    the discovery summary)."""
    meta = check_schema(path, DISCOVERY_REGIONS)
    with reading(path):
        return read_table(path).to_pydict(), meta["clusters"], meta["summary"]


def write_training_regions(
    path: str | os.PathLike,
    regions: dict[str, list],
    summary: dict[str, Any],
    ranked: list[int],
    keys: dict[str, str],
    config_hash: str,
) -> None:
    write_parquet(
        with_metadata(
            _region_table(regions, {}),
            TRAINING_REGIONS,
            config_hash,
            {"keys": keys, "summary": summary, "ranked": ranked},
        ),
        path,
    )


def read_training_regions(path: str | os.PathLike) -> tuple[dict[str, list], list[int]]:
    """(sample_id, kind, feature, box and assigned cluster of every region, the discovery's ranked candidates)."""
    meta = check_schema(path, TRAINING_REGIONS)
    with reading(path):
        return read_table(path).to_pydict(), meta["ranked"]


def read_discovery_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The (dataset, model, method) keys and the discovery summary of a regions file."""
    meta = check_schema(path, DISCOVERY_REGIONS)
    return {**meta["keys"], **meta["summary"]}
