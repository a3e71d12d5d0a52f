"""One (dataset, model, method): every evaluation set through the classifier once, logits kept at float32.

A set is a named list of prepared shards and the shift applied to them on the fly, as the explain stage applies
it: `val` (temperature fitting), `test/<shift>`, OOD splits, the cue-conflict split. The model loads once per job.
Besides the logits, each image's cosine to every class prompt ("a photo of a {name}" through the model's text
tower, against the image features the head reads): MCM's own score, for a linear head (LP, FT) too, whose logits
are no scaled cosines.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from vlm_rationality.artefacts import PreparedShard, write_predictions
from vlm_rationality.data.shards import batches_under_shift
from vlm_rationality.device import resolve_device
from vlm_rationality.models.classifier_spec import ClassifierSpec
from vlm_rationality.models.heads import prompt_features
from vlm_rationality.progress import Progress


@torch.no_grad()
def predict(
    classifier_spec: ClassifierSpec,
    sets: Sequence[dict[str, Any]],
    out: str,
    device: str,
    batch_size: int,
    config_hash: str,
    keys: dict[str, str],
) -> dict[str, Any]:
    """`sets`: [{name, shift, shards}]. Writes the predictions file; returns what it counted per set."""
    dev = resolve_device(device)
    classifier = classifier_spec.load(dev)
    text = prompt_features(classifier.model, classifier_spec.prompts)
    rows: dict[str, list] = {"sets": [], "sample_ids": [], "labels": [], "backgrounds": [], "logits": [], "cosines": []}
    counts, skipped = {}, {}
    progress = Progress("predict", sum(PreparedShard(path).rows for spec in sets for path in spec["shards"]))
    for spec in sets:
        seen, extra = 0, _background_column(spec["shards"])
        with batches_under_shift(spec["shards"], batch_size, spec["shift"], extra) as batches:
            for batch in batches:
                images = classifier.model.preprocess(batch.images.to(dev))
                features = classifier.features(classifier.model.encode_image(images))
                logits = classifier.head(features).float().cpu().numpy()
                rows["cosines"].append((F.normalize(features.float(), dim=-1) @ text.T).cpu().numpy())
                rows["sets"] += [spec["name"]] * len(logits)
                rows["sample_ids"] += list(batch.sample_ids)
                rows["labels"].append(batch.labels.numpy())
                rows["backgrounds"] += list(batch.extra.get("background", [None] * len(logits)))
                rows["logits"].append(logits)
                seen += len(logits)
                progress.update(len(logits), spec["name"])
        counts[spec["name"]] = seen
        skipped[spec["name"]] = sum(
            sum(PreparedShard(path).meta.get("skipped", {}).values()) for path in spec["shards"]
        )
    progress.close()
    empty = np.zeros((0, classifier.num_classes), np.float32)
    logits, cosines = (np.concatenate(rows[name]) if rows[name] else empty for name in ("logits", "cosines"))
    meta = {
        "keys": keys,
        "logit_scale": float(classifier.model.logit_scale),
        "head_kind": classifier.kind,
        "counts": counts,
        "skipped": skipped,
    }
    write_predictions(
        out,
        sets=rows["sets"],
        sample_ids=rows["sample_ids"],
        labels=np.concatenate(rows["labels"]) if rows["labels"] else np.zeros(0, np.int32),
        backgrounds=rows["backgrounds"],
        logits=logits,
        cosines=cosines,
        config_hash=config_hash,
        meta=meta,
    )
    return meta


def _background_column(shards: Sequence[str]) -> tuple[str, ...]:
    """The synthetic generator's `background` (the cue-conflict texture's class) where the shards have it."""
    return ("background",) if shards and "background" in pq.read_schema(shards[0]).names else ()
