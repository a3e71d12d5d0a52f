"""The score stage: heatmap files -> one row per (dataset, shift, model, method, heatmap method)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from vlm_rationality.artefacts import (
    HEATMAP_KEYS,
    NO_PREDICTION,
    UNDEFINED_RMA,
    PreparedShard,
    first_repeat,
    read_heatmaps,
    read_twins,
)
from vlm_rationality.metrics.cue import cue_reliance
from vlm_rationality.metrics.grounding import NO_GROUNDING, grounding
from vlm_rationality.metrics.groups import (
    NO_GROUPS,
    NO_REGION,
    NO_STICKER,
    cue_present,
    region_accuracy,
    sticker_effect,
    worst_group,
)
from vlm_rationality.metrics.rationality import rationality, resolve_undefined

log = logging.getLogger(__name__)


def score_table(
    heatmap_paths: Sequence[str | os.PathLike],
    threshold: float,
    iterations: int,
    seed: int,
    undefined_rma: str = "exclude",
    sweeps: dict[str, dict[str, Any]] | None = None,
    groups: dict[str, dict[str, Any]] | None = None,
    twins: Sequence[str | os.PathLike] = (),
    agreement: float = 1.0,
) -> pa.Table:
    """`undefined_rma`: what an undefined RMA counts as (metrics/rationality.py, UNDEFINED_POLICIES); the
    n_undefined_* columns count the statuses whatever the policy. `sweeps`: variant -> its sweep label
    ({method, values}); its rows get `sweep_of` and a `setting_<key>` column per swept key (null elsewhere).
    `groups`: dataset -> {tied: class -> its training cue's background, or sticker: the class a sticker is tied to;
    shards: the prepared shards of the scored split, which record each sample's background or sticker}; its rows get
    the worst-group accuracy (metrics/groups.py) and, for the sticker, ε1/ε2, the other datasets' rows nulls.
    `twins`: twins files (predict/twins.py); with any, every row gets the true rationale
    (metrics/grounding.py: PT*, IR*, background-alone accuracy, BG-gap) of its (dataset, model, method) on the clean
    data, at `agreement`, and nulls where it has none (a shifted row, a pair without twins); with `groups` as well,
    RaVL's region-level accuracy and worst group from the twins' object alone (metrics/groups.py)."""
    sweeps, groups = sweeps or {}, groups or {}
    cues = {  # dataset -> sample_id -> its background (a background cue) or whether it carries the sticker
        dataset: {
            k: v
            for path in spec["shards"]
            for k, v in (
                PreparedShard(path).backgrounds() if "tied" in spec else PreparedShard(path).cue_present()
            ).items()
        }
        for dataset, spec in groups.items()
    }
    swept_keys = sorted({key for label in sweeps.values() for key in label["values"]})
    tables, files, metas, skipped = _heatmaps_by_key(heatmap_paths)
    truth = twin_columns(twins)

    rows: list[dict[str, Any]] = []
    for key in sorted(tables):
        table = pa.concat_tables(tables[key])
        refuse_repeats(table.column("sample_id").to_pylist(), files[key])
        pred = table.column("pred").to_numpy()
        predicted = pred != NO_PREDICTION  # non-finite logits: counted, and left out of every metric
        labels = table.column("label").to_numpy()[predicted]
        correct = pred[predicted] == labels
        statuses = np.asarray(table.column("rma_status").to_pylist())[predicted]
        rma = resolve_undefined(table.column("rma").to_numpy()[predicted], statuses, undefined_rma)
        result = rationality(correct, rma, threshold, iterations, seed)
        row: dict[str, Any] = dict(zip(HEATMAP_KEYS, key))
        row.update(result.as_row())
        raw_rma = table.column("rma").to_numpy()[predicted]
        row.update(cue_reliance(correct, raw_rma, table.column("cue_rma").to_numpy()[predicted], iterations, seed))
        row["cue"] = "local" if any(m.get("cue") == "local" for m in metas[key]) else "background"
        row.update({f"n_undefined_{s}": int(np.sum(statuses == s)) for s in UNDEFINED_RMA})
        row["n_nonfinite_logits"] = int((~predicted).sum())
        if row["n_nonfinite_logits"]:
            log.warning(
                "%s: %d of %d samples have non-finite logits, so this classifier is broken (NaN or Inf in its "
                "checkpoint, or a diverged fine-tuning); its metrics leave them out and the tables mark it",
                "/".join(key),
                row["n_nonfinite_logits"],
                len(pred),
            )
        row["n_skipped"] = sum(skipped[key].values())
        row["n_sticker_missing"] = sum(int(m.get("sticker_missing", 0)) for m in metas[key])
        row.update(NO_GROUPS)
        row.update(NO_STICKER)
        if row["dataset"] in groups:
            ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)[predicted]
            found = np.asarray([cues[row["dataset"]][i] for i in ids])
            row.update(_group_columns(groups[row["dataset"]], found, labels, correct))
        row.update(NO_REGION)
        if twins:
            found = truth.get((row["dataset"], row["model"], row["method"])) if row["shift"] == "clean" else None
            row.update(NO_GROUNDING if found is None else _grounding_columns(found, agreement, iterations, seed))
            if found is not None and row["dataset"] in groups:
                row.update(_region_columns(groups[row["dataset"]], found, cues[row["dataset"]]))
        row["threshold"] = threshold
        row["undefined_rma"] = undefined_rma
        if sweeps:
            label = sweeps.get(row["method"], {"method": None, "values": {}})
            row["sweep_of"] = label["method"]
            row.update({f"setting_{key}": label["values"].get(key) for key in swept_keys})
        rows.append(row)
    return pa.Table.from_pylist(rows)


def _heatmaps_by_key(paths: Sequence[str | os.PathLike]) -> tuple[dict, dict, dict, dict]:
    """Per (dataset, shift, model, method, heatmap method): its files' tables, paths, metadata and skip counts."""
    tables: dict[tuple[str, ...], list[pa.Table]] = defaultdict(list)
    files: dict[tuple[str, ...], list[str]] = defaultdict(list)
    metas: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    skipped: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in paths:
        meta, table = read_heatmaps(path, ["sample_id", "label", "pred", "rma", "rma_status", "cue_rma"])
        key = tuple(meta["keys"][k] for k in HEATMAP_KEYS)
        tables[key].append(table)
        files[key].append(str(path))
        metas[key].append(meta)
        for reason, count in meta.get("skipped", {}).items():
            skipped[key][reason] += int(count)
    if not tables:
        raise ValueError("no heatmap shards to score")
    return tables, files, metas, skipped


def _group_columns(group: dict[str, Any], found: np.ndarray, labels: np.ndarray, correct: np.ndarray) -> dict:
    """Worst-group accuracy (and, for a sticker, ε1/ε2) from each sample's background or sticker (`found`)."""
    present = _present(group, found, labels)
    columns = worst_group(correct, labels, present)
    if "sticker" in group:
        columns.update(sticker_effect(correct, labels, present, group["sticker"]))
    return columns


def _region_columns(group: dict[str, Any], found: dict[str, Any], cues: dict[str, Any]) -> dict[str, Any]:
    """RaVL's region-level accuracy and worst group from the twins' predictions on the object alone."""
    labels = np.asarray(found["label"])
    present = _present(group, np.asarray([cues[i] for i in found["sample_id"]]), labels)
    return region_accuracy(labels, found["object_pred"], present)


def _present(group: dict[str, Any], found: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Whether each sample shows its class's tied background, or carries the sticker."""
    return cue_present(labels, found, group["tied"]) if "tied" in group else found.astype(bool)


def _grounding_columns(found: dict[str, Any], agreement: float, iterations: int, seed: int) -> dict[str, Any]:
    """The true rationale of one (dataset, model, method) from its twins' columns."""
    return grounding(
        found["label"],
        found["pred"],
        found["twin_pred"],
        found["twin_same_class"],
        found["alone_pred"],
        agreement,
        iterations,
        seed,
        found.get("twin_cue_class"),
    )


def twin_columns(paths: Sequence[str | os.PathLike]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(dataset, model, method) -> its twins files' columns, concatenated in file order."""
    parts: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    files: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for path in paths:
        meta, columns = read_twins(path)
        key = tuple(meta["keys"][k] for k in ("dataset", "model", "method"))
        parts[key].append(columns)
        files[key].append(str(path))
    for key, found in parts.items():
        refuse_repeats([sample for c in found for sample in c["sample_id"]], files[key])
    return {
        key: {
            name: (
                sum((c[name] for c in found), []) if name == "sample_id" else np.concatenate([c[name] for c in found])
            )
            for name in found[0]
        }
        for key, found in parts.items()
    }


def aligned_twins(twins: dict[str, Any], sample_ids: Sequence[str], what: str) -> dict[str, Any]:
    """One classifier's twins columns in the order of `sample_ids`; explained samples without twins fail, naming
    `what`."""
    position = {sample_id: i for i, sample_id in enumerate(twins["sample_id"])}
    missing = [i for i in sample_ids if i not in position]
    if missing:
        raise ValueError(f"{what}: {len(missing)} explained samples have no twins (e.g. {missing[0]}); rerun the twins")
    order = np.asarray([position[i] for i in sample_ids], dtype=np.int64)
    return {name: values[order] for name, values in twins.items() if name != "sample_id"}


def refuse_repeats(sample_ids: Sequence[str], paths: Sequence[str]) -> None:
    """One row per sample: the files of one classifier that hold a sample twice (a file copied over another) are
    refused, naming them."""
    repeated = first_repeat(sample_ids)
    if repeated is not None:
        raise ValueError(
            f"sample {repeated!r} comes more than once in {', '.join(paths)}: a file copied over another? delete "
            "the copy and rerun (Snakemake makes it again)"
        )
