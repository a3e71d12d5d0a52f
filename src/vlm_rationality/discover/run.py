"""The discover stage: RaVL's Stage 1 for one (dataset, model, method) on the scored split.

Each prepared image gives its regions (regions.py), the method's classifier embeds the images and their regions
(embed.py), the regions are clustered (clusters.py) and the clusters weighed by how the classifier's errors follow
them (identify.py). Written: one discovery row (the chosen K and silhouette, the candidates, the top cluster's size
and the class it is tied to, Precision@10 where the dataset knows its cue, beside Random's and George's, george.py),
the region table (box, what the region shows, cluster, rank in the top cluster) and a PNG grid of the top cluster's
first regions.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from vlm_rationality.artefacts import PreparedShard
from vlm_rationality.data.shards import batches_under_shift, shared_columns
from vlm_rationality.discover.clusters import cluster_regions, k_range
from vlm_rationality.discover.embed import class_embeddings, crops, embed
from vlm_rationality.discover.george import george_slice
from vlm_rationality.discover.identify import (
    identify,
    precision_at,
    random_precision_at,
    rank_regions,
    zero_shot_scores,
)
from vlm_rationality.discover.regions import background_boxes, grid_boxes, object_box
from vlm_rationality.metrics.groups import NO_GROUPS, cue_present, worst_group
from vlm_rationality.progress import Progress

OBJECT, BACKGROUND, GRID, STICKER = "object", "background", "grid", "sticker"
log = logging.getLogger(__name__)


def image_regions(
    image_mask: np.ndarray, sample_id: str, settings: dict[str, Any], cue_mask: np.ndarray | None = None
) -> list[tuple[tuple[int, int, int, int], str]]:
    """[(box, kind)]: the object box, background squares and, where the image carries a local cue (`cue_mask`, the
    sticker), the cue's box, where the object is known; else the grid. Background squares touch neither."""
    box = object_box(image_mask)
    if box is None:
        return [(cell, GRID) for cell in grid_boxes(*image_mask.shape, settings["grid"])]
    sticker = object_box(cue_mask) if cue_mask is not None else None
    occupied = image_mask | cue_mask if sticker is not None else image_mask
    rng = np.random.default_rng([settings["seed"], zlib.crc32(sample_id.encode())])
    side = max(1, round(settings["box_fraction"] * min(image_mask.shape)))
    return (
        [(box, OBJECT)]
        + [(b, BACKGROUND) for b in background_boxes(occupied, settings["background_boxes"], side, rng)]
        + ([(sticker, STICKER)] if sticker is not None else [])
    )


def shows_cue(kind: str, feature: int | None, cue: dict[str, Any] | None, tied_class: int | None) -> bool:
    """Whether a region shows the spurious cue tied to `tied_class` (the right feature and the right class at
    once): the background tied to it (`cue` {tied: class -> background}), or the sticker where it is tied to it
    (`cue` {sticker: class})."""
    if cue is None or tied_class is None:
        return False
    if "tied" in cue:
        return kind == BACKGROUND and feature == cue["tied"][tied_class]
    return kind == STICKER and tied_class == cue["sticker"]


def regions_showing_cue(regions: dict[str, list], cue: dict[str, Any], tied_class: int | None) -> np.ndarray:
    """bool [regions]: `shows_cue` of every region of a region table, for one ranking's tied class."""
    return np.array([shows_cue(k, f, cue, tied_class) for k, f in zip(regions["kind"], regions["feature"])], bool)


@dataclass
class EmbeddedRegions:
    """A split's regions as the classifier sees them: the region table's columns and the embeddings."""

    regions: dict[str, list]  # image (row of `labels`), sample_id, kind, feature, box
    region_embedding: np.ndarray  # [regions, D], unit norm
    image_embedding: np.ndarray  # [images, D], unit norm
    labels: np.ndarray  # [images]
    backgrounds: np.ndarray  # [images]: the background's class where the dataset records it, else -1
    stickers: np.ndarray  # bool [images]: the image carries a local cue (the sticker)
    n_background_short: int  # background squares that found no room beside the object
    n_grid_images: int  # images without an object mask (grid regions)


def embed_regions(
    classifier,
    shards: Sequence[str],
    settings: dict[str, Any],
    device,
    batch_size: int,
    dataset: str,
    what: str = "discover",
) -> EmbeddedRegions:
    """Every image of `shards` and its regions, embedded a shard at a time (only embeddings are kept)."""
    labels_seen: list[int] = []
    backgrounds_seen: list[int] = []
    stickers_seen: list[bool] = []
    regions: dict[str, list] = {"image": [], "sample_id": [], "kind": [], "feature": [], "box": []}
    image_embeddings, region_embeddings = [], []
    short = grid_images = 0
    columns = shared_columns(shards, ["background", "cue_mask"])
    progress = Progress(what, sum(PreparedShard(path).rows for path in shards))
    with batches_under_shift(shards, batch_size, "clean", columns) as batches:
        for batch in batches:
            images, masks, labels = batch.images.numpy(), batch.masks().numpy(), batch.labels.tolist()
            cue_masks = batch.cue_masks().numpy() if "cue_mask" in columns else None
            backgrounds = batch.extra.get("background", [None] * len(labels))
            image_embeddings.append(embed(classifier, images, device, batch_size))
            pixels = []
            for i, sample_id in enumerate(batch.sample_ids):
                boxes = image_regions(masks[i], sample_id, settings, None if cue_masks is None else cue_masks[i])
                if boxes[0][1] == GRID:
                    grid_images += 1
                else:
                    short += settings["background_boxes"] - sum(kind == BACKGROUND for _, kind in boxes)
                for box, kind in boxes:
                    regions["image"].append(len(labels_seen))
                    regions["sample_id"].append(sample_id)
                    regions["kind"].append(kind)
                    regions["feature"].append(
                        labels[i] if kind == OBJECT else backgrounds[i] if kind == BACKGROUND else None
                    )
                    regions["box"].append(list(box))
                pixels.append(crops(images[i], [box for box, _ in boxes]))
                labels_seen.append(labels[i])
                backgrounds_seen.append(-1 if backgrounds[i] is None else int(backgrounds[i]))
                stickers_seen.append(cue_masks is not None and bool(cue_masks[i].any()))
            region_embeddings.append(embed(classifier, np.concatenate(pixels), device, batch_size))
            progress.update(len(labels), "images")
    progress.close()
    if grid_images:
        log.warning(
            "dataset %s: %d of %d images have no object mask; their regions are a %d x %d grid",
            dataset,
            grid_images,
            len(labels_seen),
            settings["grid"],
            settings["grid"],
        )
    empty = np.zeros((0, classifier.head.in_features), np.float32)
    return EmbeddedRegions(
        regions,
        np.concatenate(region_embeddings) if region_embeddings else empty,
        np.concatenate(image_embeddings) if image_embeddings else empty,
        np.array(labels_seen, int),
        np.array(backgrounds_seen, int),
        np.array(stickers_seen, bool),
        short,
        grid_images,
    )


def discover(
    classifier,
    shards: Sequence[str],
    cue: dict[str, Any] | None,
    settings: dict[str, Any],
    device,
    batch_size: int,
    dataset: str,
) -> tuple[dict[str, Any], dict[str, list], dict[str, list], list[np.ndarray]]:
    """(the discovery row, the region table's columns, the clusters {medoids: region rows, ranked: candidate
    clusters by gap}, the top cluster's first regions as uint8 crops). `cue`: what the dataset ties to its classes
    ({tied: class -> background} or {sticker: class}; plan.config.cue_tie), None where it does not know."""
    seen = embed_regions(classifier, shards, settings, device, batch_size, dataset)
    regions, region_embedding, labels = seen.regions, seen.region_embedding, seen.labels
    text = class_embeddings(classifier)
    region_image = np.array(regions["image"])
    try:
        clustering = cluster_regions(
            region_embedding, k_range(len(text)), settings["seed"], settings.get("max_regions")
        )
    except ValueError as err:
        raise ValueError(f"dataset {dataset}: {err}") from None
    image_scores, region_scores = zero_shot_scores(seen.image_embedding, text), zero_shot_scores(region_embedding, text)
    evidence = identify(clustering.labels, labels, image_scores, region_scores, region_image)
    top = evidence[0] if evidence and evidence[0].candidate else None
    ranked = (
        rank_regions(region_embedding, clustering.labels, clustering.medoids, top.cluster) if top else np.zeros(0, int)
    )
    rank = np.full(len(region_embedding), -1)
    rank[ranked] = np.arange(len(ranked))
    regions["cluster"] = clustering.labels.tolist()
    regions["rank"] = rank.tolist()
    row: dict[str, Any] = {
        "n_images": len(labels),
        "n_regions": len(region_embedding),
        "n_background_short": seen.n_background_short,
        "n_grid_images": seen.n_grid_images,
        "k": clustering.k,
        "silhouette": clustering.silhouette,
        "n_candidates": sum(e.candidate for e in evidence),
        "top_cluster": top.cluster if top else None,
        "top_cluster_size": len(ranked),
        "top_gap": top.gap if top else None,
        "top_influence": top.influence if top else None,
        "tied_class": top.tied_class if top else None,
        "top10_background_share": float(np.mean([regions["kind"][r] == BACKGROUND for r in ranked[:10]]))
        if top
        else None,
    }
    # Precision@10 where the dataset knows its cue: the top regions that show the cue tied to the class the cluster
    # is tied to (the right feature and the right class at once).
    # Random's expected Precision@10 counts the same regions among all of them: the ranking's skill beyond the share.
    row["spurious_kind"], row["spurious_feature"], row["precision_at_10"] = None, None, None
    row["random_precision_at_10"] = None
    if cue is not None:
        tied_class = top.tied_class if top else None
        shows = regions_showing_cue(regions, cue, tied_class)
        row["spurious_kind"] = BACKGROUND if "tied" in cue else STICKER
        row["spurious_feature"] = cue["tied"][tied_class] if "tied" in cue and tied_class is not None else None
        row["precision_at_10"] = precision_at(shows[ranked].astype(int) if top else None, 1)
        row["random_precision_at_10"] = random_precision_at(shows) if top else None
    row.update(_george(seen, image_scores, cue, settings))
    row.update(_accuracies(seen, image_scores, region_scores, cue))
    clusters = {
        "medoids": [int(m) for m in clustering.medoids],
        "ranked": [int(e.cluster) for e in evidence if e.candidate],
    }
    top_regions = [(regions["sample_id"][r], tuple(regions["box"][r])) for r in ranked[:20]]
    return row, regions, clusters, cut_regions(shards, top_regions)


def _george(
    seen: EmbeddedRegions, image_scores: np.ndarray, cue: dict[str, Any] | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """George's failure slice (george.py) on the same regions and scores: its class, accuracy and the class it is
    read as tied to, and its Precision@10 counted as RaVL's (0 where no class has a slice)."""
    found = george_slice(
        seen.region_embedding,
        np.array(seen.regions["image"], int),
        seen.labels,
        image_scores.argmax(1),
        settings["seed"],
        settings.get("max_regions"),
    )
    out: dict[str, Any] = {
        "george_class": found.label if found else None,
        "george_accuracy": found.accuracy if found else None,
        "george_tied_class": found.tied_class if found else None,
        "george_precision_at_10": None,
    }
    if cue is not None:
        shows = regions_showing_cue(seen.regions, cue, found.tied_class if found else None)
        out["george_precision_at_10"] = precision_at(shows[found.ranked].astype(int) if found else None, 1)
    return out


def _accuracies(
    seen: EmbeddedRegions, image_scores: np.ndarray, region_scores: np.ndarray, cue: dict[str, Any] | None
) -> dict[str, Any]:
    """Accuracy of the images and of their object regions alone (classified as the images are), overall and in
    the worst (class, cue present) group where the dataset knows each class's cue: RaVL's image and region
    accuracies, on the same images."""
    objects = np.array([r for r, kind in enumerate(seen.regions["kind"]) if kind == OBJECT], int)
    images = np.array(seen.regions["image"], int)[objects]
    out: dict[str, Any] = {}
    for level, correct, which in (
        ("image", image_scores.argmax(1) == seen.labels, np.arange(len(seen.labels))),
        ("region", region_scores[objects].argmax(1) == seen.labels[images], images),
    ):
        out[f"{level}_accuracy"] = float(correct.mean()) if len(correct) else None
        if cue is None or not len(correct):
            worst = NO_GROUPS
        elif "tied" in cue:
            worst = worst_group(
                correct, seen.labels[which], cue_present(seen.labels[which], seen.backgrounds[which], cue["tied"])
            )
        else:
            worst = worst_group(correct, seen.labels[which], seen.stickers[which])
        out[f"{level}_acc_worst_group"] = worst["acc_worst_group"]
    return out


def cut_regions(shards: Sequence[str], wanted: Sequence[tuple[str, tuple[int, int, int, int]]]) -> list[np.ndarray]:
    """uint8 crops of (sample_id, box) regions, cut again from the shards that hold them (the images are not kept)."""
    boxes: dict[str, list[tuple[int, tuple[int, int, int, int]]]] = {}
    for number, (sample_id, box) in enumerate(wanted):
        boxes.setdefault(sample_id, []).append((number, box))
    out: dict[int, np.ndarray] = {}
    with batches_under_shift(shards, 512, "clean", samples=set(boxes)) as batches:
        for batch in batches:
            for k, sample_id in enumerate(batch.sample_ids):
                for number, box in boxes[sample_id]:
                    out[number] = crops(batch.images[k].numpy(), [box])[0]
    missing = [wanted[n][0] for n in range(len(wanted)) if n not in out]
    if missing:
        raise KeyError(f"samples {missing[:3]} are in none of the shards {', '.join(map(str, shards[:3]))}...")
    return [out[n] for n in range(len(wanted))]
