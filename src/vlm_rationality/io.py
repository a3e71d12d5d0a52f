"""Atomic Parquet/JSON/safetensors writes and the metadata every artefact carries.

A killed job must never leave a file that Snakemake (or a reader) mistakes for a finished output, so
every writer goes through :func:`atomic_path`: write a hidden temp file beside the target, then rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vlm_rationality.provenance import provenance

META_SCHEMA = b"vlm_rationality.schema"
META_CONFIG_HASH = b"vlm_rationality.config_hash"
META_PROVENANCE = b"vlm_rationality.provenance"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def config_hash(config: Any) -> str:
    """A short stable hash of a JSON-able config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def with_metadata(table: pa.Table, schema_name: str, cfg_hash: str, extra: dict[str, Any] | None = None) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[META_SCHEMA] = schema_name.encode()
    meta[META_CONFIG_HASH] = cfg_hash.encode()
    meta[META_PROVENANCE] = json.dumps(provenance(), sort_keys=True).encode()
    for key, value in (extra or {}).items():
        meta[f"vlm_rationality.{key}".encode()] = json.dumps(value).encode()
    return table.replace_schema_metadata(meta)


def safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """A safetensors file's JSON header (tensor specs and `__metadata__`), read without torch or any tensor; a
    ValueError saying why where the file is no safetensors file."""
    path = Path(path)
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if size > path.stat().st_size:
            raise ValueError("header longer than the file")
        header = json.loads(handle.read(size))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The provenance an artefact was written with ({} for a file older than the key)."""
    return read_metadata(path).get("provenance", {})


def write_parquet(table: pa.Table, path: str | os.PathLike, **options: Any) -> None:
    """zstd pages, each with a CRC: damage in the middle of a file (random bytes in an incompressible image page
    decode without a word otherwise) fails its read, naming the file (`reading`)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True, **options)


def parquet_file(path: str | os.PathLike) -> pq.ParquetFile:
    """A Parquet file whose pages are checked against their CRCs as they are read."""
    return pq.ParquetFile(path, page_checksum_verification=True)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns, page_checksum_verification=True)


def read_json(path: str | os.PathLike, what: str = "rerun the stage that writes it") -> Any:
    """A JSON file, or an error naming it and `what` to do (json's own message names no file)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); {what}") from err


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Name the file in any error while reading it: a truncated or damaged Parquet file (a killed copy, a full
    disk) otherwise fails with pyarrow's message alone, e.g. 'Parquet magic bytes not found in footer'."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as err:  # pyarrow reports a damaged page (CRC, zstd) as an OSError
        raise ValueError(
            f"{path}: not a readable Parquet file ({err}); delete it and rerun the stage that writes it"
        ) from err


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The vlm_rationality.* metadata of a Parquet file, JSON-decoded where it is JSON."""
    with reading(path):
        raw = pq.read_schema(path).metadata or {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not key.startswith(b"vlm_rationality."):
            continue
        name = key.decode().removeprefix("vlm_rationality.")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value.decode()
    return out


def check_schema(path: str | os.PathLike, expected: str) -> dict[str, Any]:
    """Fail clearly when a file is not the artefact a stage expects (e.g. a stale schema version), or when any page
    of it is damaged (`verify_whole`), whichever columns the stage goes on to read."""
    meta = read_metadata(path)
    found = meta.get("schema")
    if found != expected:
        raise ValueError(
            f"{path}: schema {found!r}, expected {expected!r}; delete it and rerun the stage that writes it"
        )
    verify_whole(path)
    return meta


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime): the file versions this process has checked


def verify_whole(path: str | os.PathLike) -> None:
    """Every page of every column checked against its CRC, a row group at a time, once per process and version of
    the file: damage in a column a consumer never reads (a key column) would otherwise pass it, and leave a file
    that no other reader (pandas) can open."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    with reading(path):
        handle = parquet_file(path)
        for group in range(handle.metadata.num_row_groups):
            handle.read_row_group(group)
    _VERIFIED.add(key)
