"""The discover stage: RaVL's Stage 1 for one (dataset, model, method) on the scored split.

Each prepared image gives its regions (regions.py), the method's classifier embeds the images and their regions
(embed.py), the regions are clustered (clusters.py) and the clusters weighed by how the classifier's errors follow
them (identify.py). Written: one discovery row (the chosen K and silhouette, the candidates, the top cluster's size
and the class it is tied to, Precision@10 where the dataset knows its cue), the region table (box, what the region
shows, cluster, rank in the top cluster) and a PNG grid of the top cluster's first regions.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, Sequence

import numpy as np

from vlm_rationality.artefacts import prepared_rows, read_prepared
from vlm_rationality.discover.clusters import cluster_regions, k_range
from vlm_rationality.discover.embed import class_embeddings, crops, embed
from vlm_rationality.discover.identify import identify, precision_at, rank_regions, zero_shot_scores
from vlm_rationality.discover.regions import background_boxes, grid_boxes, object_box
from vlm_rationality.progress import Progress

OBJECT, BACKGROUND, GRID = "object", "background", "grid"
log = logging.getLogger(__name__)


def image_regions(image_mask: np.ndarray, sample_id: str, settings: dict[str, Any]) -> list[tuple[tuple[int, int, int, int], str]]:
    """[(box, kind)]: the object box and background squares where the object is known, else the grid."""
    box = object_box(image_mask)
    if box is None:
        return [(cell, GRID) for cell in grid_boxes(*image_mask.shape, settings["grid"])]
    rng = np.random.default_rng([settings["seed"], zlib.crc32(sample_id.encode())])
    side = max(1, round(settings["box_fraction"] * min(image_mask.shape)))
    return [(box, OBJECT)] + [(b, BACKGROUND) for b in background_boxes(image_mask, settings["background_boxes"], side, rng)]


def discover(classifier, shards: Sequence[str], tied: list[int] | None, settings: dict[str, Any], device,
             batch_size: int, dataset: str) -> tuple[dict[str, Any], dict[str, list], list[np.ndarray]]:
    """(the discovery row, the region table's columns, the top cluster's first regions as uint8 crops)."""
    labels_seen: list[int] = []
    regions: dict[str, list] = {"image": [], "sample_id": [], "kind": [], "feature": [], "box": []}
    image_embeddings, region_embeddings, region_shard = [], [], []
    short = grid_images = 0
    progress = Progress("discover", sum(prepared_rows(path) for path in shards))
    for number, path in enumerate(shards):  # a shard at a time: only embeddings are kept
        shard = read_prepared(path)
        backgrounds = shard.get("background", [None] * len(shard["sample_id"]))
        image_embeddings.append(embed(classifier, shard["image"], device, batch_size))
        pixels = []
        for i, sample_id in enumerate(shard["sample_id"]):
            boxes = image_regions(shard["mask"][i], sample_id, settings)
            if boxes[0][1] == GRID:
                grid_images += 1
            else:  # background squares that found no room beside the object
                short += settings["background_boxes"] - (len(boxes) - 1)
            for box, kind in boxes:
                regions["image"].append(len(labels_seen))
                regions["sample_id"].append(sample_id)
                regions["kind"].append(kind)
                regions["feature"].append(int(shard["label"][i]) if kind == OBJECT else backgrounds[i] if kind == BACKGROUND else None)
                regions["box"].append(list(box))
                region_shard.append(number)
            pixels.append(crops(shard["image"][i], [box for box, _ in boxes]))
            labels_seen.append(int(shard["label"][i]))
        if pixels:  # a shard whose every sample was skipped as bad input holds no rows
            region_embeddings.append(embed(classifier, np.concatenate(pixels), device, batch_size))
        progress.update(len(shard["sample_id"]), "images")
    progress.close()
    if grid_images:
        log.warning("dataset %s: %d of %d images have no object mask; their regions are a %d x %d grid", dataset,
                    grid_images, len(labels_seen), settings["grid"], settings["grid"])
    region_embedding = np.concatenate(region_embeddings)
    image_embedding = np.concatenate(image_embeddings)
    text = class_embeddings(classifier)
    labels = np.array(labels_seen)
    region_image = np.array(regions["image"])
    try:
        clustering = cluster_regions(region_embedding, k_range(len(text)), settings["seed"])
    except ValueError as err:
        raise ValueError(f"dataset {dataset}: {err}") from None
    evidence = identify(clustering.labels, labels, zero_shot_scores(image_embedding, text),
                        zero_shot_scores(region_embedding, text), region_image)
    top = evidence[0] if evidence and evidence[0].candidate else None
    ranked = rank_regions(region_embedding, clustering.labels, clustering.medoids, top.cluster) if top else np.zeros(0, int)
    rank = np.full(len(region_embedding), -1)
    rank[ranked] = np.arange(len(ranked))
    regions["cluster"] = clustering.labels.tolist()
    regions["rank"] = rank.tolist()
    row: dict[str, Any] = {
        "n_images": len(labels_seen), "n_regions": len(region_embedding),
        "n_background_short": short, "n_grid_images": grid_images, "k": clustering.k,
        "silhouette": clustering.silhouette, "n_candidates": sum(e.candidate for e in evidence),
        "top_cluster": top.cluster if top else None, "top_cluster_size": len(ranked),
        "top_gap": top.gap if top else None, "top_influence": top.influence if top else None,
        "tied_class": top.tied_class if top else None,
        "top10_background_share": float(np.mean([regions["kind"][r] == BACKGROUND for r in ranked[:10]])) if top else None,
    }
    # Precision@10 where the dataset knows each class's cue: the top regions that show the background tied to the
    # class the cluster is tied to (the right feature and the right class at once).
    row["spurious_feature"], row["precision_at_10"] = None, None
    if tied is not None:
        cue = tied[top.tied_class] if top and top.tied_class is not None else None
        matches = np.array([regions["kind"][r] == BACKGROUND and regions["feature"][r] == cue for r in ranked], int)
        row["spurious_feature"], row["precision_at_10"] = cue, precision_at(matches if top else None, 1)
    return row, regions, _top_crops(shards, regions, region_shard, ranked[:20])


def _top_crops(shards: Sequence[str], regions: dict[str, list], region_shard: list[int], top: np.ndarray) -> list[np.ndarray]:
    """The crops of the `top` regions, cut again from their shards (the images are not kept)."""
    out = {}
    for number in sorted({region_shard[r] for r in top}):
        shard = read_prepared(shards[number])
        position = {sample_id: i for i, sample_id in enumerate(shard["sample_id"])}
        for r in top:
            if region_shard[r] == number:
                out[r] = crops(shard["image"][position[regions["sample_id"][r]]], [tuple(regions["box"][r])])[0]
    return [out[r] for r in top]
