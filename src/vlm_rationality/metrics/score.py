"""The score stage: heatmap shards -> one row per (dataset, shift, model, method)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vlm_rationality.explain.heatmaps import SCHEMA_NAME as HEATMAP_SCHEMA
from vlm_rationality.io import atomic_path, check_schema, with_metadata, write_parquet
from vlm_rationality.metrics.rationality import rationality
from vlm_rationality.metrics.rma import UNDEFINED_STATUSES

SCHEMA_NAME = "rationality-metrics/1"
KEYS = ("dataset", "shift", "model", "method")


def score_table(heatmap_paths: Sequence[str | os.PathLike], threshold: float, iterations: int, seed: int) -> pa.Table:
    groups: dict[tuple[str, ...], list[pa.Table]] = defaultdict(list)
    skipped: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in heatmap_paths:
        meta = check_schema(path, HEATMAP_SCHEMA)
        missing = [k for k in KEYS if k not in meta.get("keys", {})]
        if missing:
            raise ValueError(f"{path}: heatmap metadata lacks {', '.join(missing)}; rerun the explain stage")
        key = tuple(meta["keys"][k] for k in KEYS)
        groups[key].append(pq.read_table(path, columns=["label", "pred", "rma", "rma_status"]))
        for reason, count in meta.get("skipped", {}).items():
            skipped[key][reason] += int(count)
    if not groups:
        raise ValueError("no heatmap shards to score")

    rows: list[dict[str, Any]] = []
    for key in sorted(groups):
        table = pa.concat_tables(groups[key])
        correct = table.column("pred").to_numpy() == table.column("label").to_numpy()
        result = rationality(correct, table.column("rma").to_numpy(), threshold, iterations, seed)
        statuses = np.asarray(table.column("rma_status").to_pylist())
        row: dict[str, Any] = dict(zip(KEYS, key))
        row.update(result.as_row())
        row.update({f"n_undefined_{s}": int(np.sum(statuses == s)) for s in UNDEFINED_STATUSES})
        row["n_skipped"] = sum(skipped[key].values())
        row["threshold"] = threshold
        rows.append(row)
    return pa.Table.from_pylist(rows)


def write_scores(table: pa.Table, parquet_path: str | os.PathLike, csv_path: str | os.PathLike, config_hash: str) -> None:
    write_parquet(with_metadata(table, SCHEMA_NAME, config_hash), parquet_path)
    with atomic_path(csv_path) as tmp:
        pacsv.write_csv(table, tmp)
