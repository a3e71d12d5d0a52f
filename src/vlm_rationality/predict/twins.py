"""One (dataset, model, method) on the counterfactual twins of a group of scored shards: logits only.

Each sample is classified as it is, on each twin (its object on another background), on its background alone and on
its object alone (the background replaced by its mean colour; data/twins.py). Whether the prediction survives every
change of background is the ground truth the rationale metrics are checked against (metrics/grounding.py). The twins
are rendered in the job and never stored: only the predictions are.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from vlm_rationality.artefacts import NO_PREDICTION, PreparedShard, write_twins
from vlm_rationality.data.base import Dataset
from vlm_rationality.data.twins import Pool, object_only
from vlm_rationality.models.classifier_spec import ClassifierSpec
from vlm_rationality.progress import Progress

Classify = Callable[[torch.Tensor], torch.Tensor]  # uint8 [B, H, W, 3] -> logits [B, C]


def predictions(logits: torch.Tensor) -> np.ndarray:
    """argmax, or NO_PREDICTION where a row's logits are not all finite."""
    logits = logits.float().cpu()
    return np.where(torch.isfinite(logits).all(dim=1).numpy(), logits.argmax(dim=1).numpy(), NO_PREDICTION)


@torch.no_grad()
def twin_predictions(
    classify: Classify, dataset: Dataset, split: str, shards: Sequence[str], count: int, seed: int, batch_size: int
) -> dict[str, Any]:
    """Predictions on every sample of `shards`, its twins, its background alone and its object alone. `batch_size`
    counts images through the model (a sample brings K + 3 of them)."""
    loaded = [PreparedShard(path).read() for path in shards]
    pool = Pool(
        [i for part in loaded for i in part["sample_id"]],
        np.concatenate([p["label"] for p in loaded]),
        np.concatenate([p["image"] for p in loaded]),
        np.concatenate([p["mask"] for p in loaded]),
    )
    n = len(pool.sample_ids)
    out: dict[str, list] = {
        "pred": [],
        "twin_pred": [],
        "same_class": [],
        "cue_class": [],
        "alone_pred": [],
        "object_pred": [],
    }
    progress = Progress("twins", n)
    step = max(1, batch_size // (count + 3))
    for start in range(0, n, step):
        stop = min(start + step, n)
        images, masks = pool.images[start:stop], pool.masks[start:stop]
        twins = dataset.twins(
            split, pool.sample_ids[start:stop], pool.labels[start:stop], images, masks, pool, count, seed
        )
        width = twins.images.shape[1]
        stacked = np.concatenate(
            [images[:, None], twins.images, twins.alone[:, None], object_only(images, masks)[:, None]], axis=1
        )
        preds = predictions(classify(torch.from_numpy(stacked.reshape(-1, *stacked.shape[2:])))).reshape(
            stop - start, -1
        )
        out["pred"].append(preds[:, 0])
        out["twin_pred"].append(preds[:, 1 : 1 + width])
        out["alone_pred"].append(preds[:, -2])
        out["object_pred"].append(preds[:, -1])
        out["same_class"].append(twins.same_class)
        out["cue_class"].append(twins.cue_class)
        progress.update(stop - start)
    progress.close()
    if not out["pred"]:
        return {
            "sample_id": [],
            "label": np.zeros(0, np.int32),
            "pred": np.zeros(0, np.int64),
            "twin_pred": np.zeros((0, count), np.int64),
            "same_class": np.zeros((0, count), bool),
            "cue_class": np.zeros((0, count), np.int64),
            "alone_pred": np.zeros(0, np.int64),
            "object_pred": np.zeros(0, np.int64),
            "skipped": _skipped(shards),
        }
    return {
        "sample_id": pool.sample_ids,
        "label": pool.labels,
        **{k: np.concatenate(v) for k, v in out.items()},
        "skipped": _skipped(shards),
    }


def _skipped(shards: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in shards:
        for reason, value in PreparedShard(path).meta.get("skipped", {}).items():
            counts[reason] = counts.get(reason, 0) + int(value)
    return counts


def predict_twins(
    classifier_spec: ClassifierSpec,
    dataset_spec: dict[str, Any],
    split: str,
    shards: Sequence[str],
    settings: dict[str, Any],
    out: str,
    device: str,
    batch_size: int,
    config_hash: str,
    keys: dict[str, str],
) -> dict[str, Any]:
    """The twins job: the method's classifier on the group's twins, into one twins file; returns its counts."""
    from vlm_rationality.data.base import build_dataset
    from vlm_rationality.device import resolve_device

    dev = resolve_device(device)
    classifier = classifier_spec.load(dev)
    classify = lambda images: classifier(classifier.model.preprocess(images.to(dev)))  # noqa: E731
    found = twin_predictions(
        classify,
        build_dataset(dataset_spec),
        split,
        shards,
        int(settings["backgrounds"]),
        int(settings["seed"]),
        batch_size,
    )
    meta = {"keys": keys, "source_shards": list(shards), "skipped": found["skipped"], "settings": settings}
    write_twins(
        out,
        sample_ids=found["sample_id"],
        labels=found["label"],
        preds=found["pred"],
        twin_preds=found["twin_pred"],
        same_class=found["same_class"],
        cue_class=found["cue_class"],
        alone_preds=found["alone_pred"],
        object_preds=found["object_pred"],
        config_hash=config_hash,
        meta=meta,
    )
    predicted = found["pred"] != NO_PREDICTION
    return {
        "n": len(found["sample_id"]),
        "twins": int(found["twin_pred"].shape[1]),
        "accuracy": float((found["pred"] == found["label"])[predicted].mean()) if predicted.any() else float("nan"),
    }
