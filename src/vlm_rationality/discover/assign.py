"""RaVL's bridge from Stage 1 to Stage 2: the regions of the training split, each assigned to a discovered cluster.

Regions are drawn as discovery draws them (run.image_regions) and embedded by the same classifier, the one being
mitigated; a region joins the cluster whose medoid is nearest in cosine, as K-Medoids assigns its own points. The
medoids are embedded again from their crops in the discovered split, so nothing but boxes travels between stages.
Which clusters count as spurious is the fine-tuning method's setting (finetune/ravl.py), so this file lists every
region's cluster and the discovery's candidates in the order of their gap.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from vlm_rationality.artefacts import read_discovery_regions
from vlm_rationality.discover.embed import embed
from vlm_rationality.discover.run import BACKGROUND, STICKER, cut_regions, embed_regions

log = logging.getLogger(__name__)


def nearest_medoid(embeddings: np.ndarray, medoids: np.ndarray) -> np.ndarray:
    """Index of the most similar medoid per row (unit-norm rows: the smallest cosine distance)."""
    return (embeddings @ medoids.T).argmax(1) if len(embeddings) else np.zeros(0, int)


def assign_regions(
    classifier,
    shards: Sequence[str],
    discovery: str,
    discovered_shards: Sequence[str],
    settings: dict[str, Any],
    device,
    batch_size: int,
    dataset: str,
) -> tuple[dict[str, list], dict[str, Any], list[int]]:
    """(the region table's columns with `cluster`, a summary, the discovery's candidate clusters by gap)."""
    found, clusters, discovered = read_discovery_regions(discovery)
    medoid_regions = [(found["sample_id"][r], tuple(found["box"][r])) for r in clusters["medoids"]]
    medoids = embed(classifier, np.stack(cut_regions(discovered_shards, medoid_regions)), device, batch_size)
    seen = embed_regions(classifier, shards, settings, device, batch_size, dataset, what="assign regions")
    regions = dict(seen.regions)
    del regions["image"]
    regions["cluster"] = nearest_medoid(seen.region_embedding, medoids).tolist()
    ranked = clusters["ranked"]
    top = ranked[0] if ranked else None
    in_top = [r for r, cluster in enumerate(regions["cluster"]) if cluster == top]
    summary: dict[str, Any] = {
        "n_images": len(seen.labels),
        "n_regions": len(regions["cluster"]),
        "n_background_short": seen.n_background_short,
        "n_grid_images": seen.n_grid_images,
        "top_cluster": top,
        "n_top_cluster": len(in_top),
        "top_background_share": float(np.mean([regions["kind"][r] == BACKGROUND for r in in_top])) if in_top else None,
    }
    if top is None:
        log.warning(
            "dataset %s: the discovery %s found no candidate cluster; no training region is spurious",
            dataset,
            discovery,
        )
    kind, feature = discovered.get("spurious_kind"), discovered.get("spurious_feature")
    # Evaluation only, where the dataset knows its cue: how much of the top cluster shows the cue it was found for.
    shows = {
        BACKGROUND: lambda r: regions["kind"][r] == BACKGROUND and regions["feature"][r] == feature,
        STICKER: lambda r: regions["kind"][r] == STICKER,
    }.get(kind if kind != BACKGROUND or feature is not None else None)
    summary["top_cue_share"] = float(np.mean([shows(r) for r in in_top])) if in_top and shows else None
    return regions, summary, ranked
