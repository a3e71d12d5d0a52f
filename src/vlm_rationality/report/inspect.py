"""`vlm-rationality inspect`: what any file of a run is, said without torch and without advice to delete what the
project did not write. Parquet artefacts (schema, metadata, the first rows as a table), safetensors checkpoints
(header metadata and tensor shapes, the JSON sidecar beside them), JSON sidecars, CSV tables, the text outputs;
anything else is named as not an artefact of this project."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vlm_rationality.io import read_metadata, safetensors_header

WIDE = ("image", "mask", "cue_mask", "heatmap", "logits", "twin_pred", "twin_same_class", "twin_cue_class")
TEXT = (".md", ".tex", ".html", ".log", ".tsv", ".txt", ".rst", ".yaml", ".yml")
PEEK = 1 << 20  # at most this much of a text file is printed


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], width: int = 24) -> str:
    """Rows as an aligned text table, each cell cut to `width` characters."""

    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cell(c) for c in columns]] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[k]) for line in cells) for k in range(len(columns))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def describe(path: str | os.PathLike, rows: int = 5) -> str:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"inspect: {path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet(path, rows)
    if suffix == ".safetensors":
        return _safetensors(path)
    if suffix == ".json":
        return _json(path)
    if suffix == ".csv":
        return _csv(path, rows)
    if suffix in TEXT:
        text = path.read_bytes()[:PEEK].decode("utf-8", errors="replace")
        return f"{path}: text, {path.stat().st_size:,} bytes\n{text}"
    return f"{path}: not an artefact of this project ({suffix or 'no suffix'}); nothing to show"


def _parquet(path: Path, rows: int) -> str:
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
    except Exception as err:  # pyarrow raises several types for a file that is no Parquet
        return f"{path}: not a readable Parquet file ({err}); if a stage of this project wrote it, rerun that stage"
    meta = read_metadata(path)
    head = [f"{path}: {parquet.metadata.num_rows:,} rows, {parquet.metadata.num_row_groups} row group(s)"]
    if "schema" not in meta:
        head.append("not an artefact of this project (no vlm_rationality.schema in its metadata); its columns:")
    else:
        head.append(json.dumps(meta, indent=2, default=str))
    head.append(str(parquet.schema_arrow.remove_metadata()))
    columns = [name for name in parquet.schema_arrow.names if name not in WIDE]
    batch = next(parquet.iter_batches(batch_size=max(rows, 1), columns=columns), None) if rows > 0 else None
    found = batch.to_pylist()[:rows] if batch is not None else []
    names = _class_names(meta)
    if found and names:  # class names beside the indices
        for row in found:
            for column in ("label", "pred"):
                if isinstance(row.get(column), int) and 0 <= row[column] < len(names):
                    row[f"{column}_name"] = names[row[column]]
        columns = [*columns, *(f"{c}_name" for c in ("label", "pred") if f"{c}_name" in found[0])]
    if found:
        left_out = ", ".join(c for c in WIDE if c in parquet.schema_arrow.names) or "none"
        head += ["", f"first {len(found)} row(s) (array columns left out: {left_out}):", table(found, columns)]
    return "\n".join(head)


def _class_names(meta: dict[str, Any]) -> list[str]:
    """A prepared shard's class names, or those of the first prepared shard a stage's file names as its source
    (where that shard is reachable from here)."""
    if isinstance(meta.get("class_names"), list):
        return meta["class_names"]
    for source in meta.get("source_shards", [])[:1]:
        if Path(source).is_file():
            found = read_metadata(source).get("class_names")
            return found if isinstance(found, list) else []
    return []


def _safetensors(path: Path) -> str:
    """The header alone: 8 bytes of length, then JSON (no tensor is read)."""
    try:
        header = safetensors_header(path)
    except ValueError as err:  # json's errors are ValueErrors too
        return f"{path}: not a readable safetensors file ({err})"
    metadata = header.pop("__metadata__", {}) or {}
    tensors = [
        {"tensor": name, "dtype": spec["dtype"], "shape": tuple(spec["shape"]), "numbers": math.prod(spec["shape"])}
        for name, spec in sorted(header.items())
    ]
    total = sum(t["numbers"] for t in tensors)
    out = [f"{path}: safetensors, {len(tensors)} tensors, {total:,} numbers, {path.stat().st_size:,} bytes"]
    if "head_kind" in metadata:
        out.append(f"a classifier checkpoint of this project (head: {metadata['head_kind']})")
    out.append(json.dumps(metadata, indent=2))
    out.append(table(tensors, ["tensor", "dtype", "shape", "numbers"], width=60))
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        out += ["", _json(sidecar)]
    return "\n".join(out)


def _json(path: Path) -> str:
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return f"{path}: not valid JSON ({err})"
    what = "a checkpoint sidecar" if isinstance(data, dict) and {"model", "metrics"} <= data.keys() else "JSON"
    return f"{path}: {what}\n{json.dumps(data, indent=2, default=str)}"


def _csv(path: Path, rows: int) -> str:
    try:
        found = pacsv.read_csv(path)
    except Exception as err:  # pyarrow's CSV errors
        return f"{path}: not a readable CSV file ({err})"
    out = [f"{path}: CSV, {found.num_rows:,} rows, columns: {', '.join(found.column_names)}"]
    if rows > 0 and found.num_rows:
        out.append(table(found.slice(0, rows).to_pylist(), found.column_names))
    return "\n".join(out)
