"""RaVL's Stage 1 on hand-made arrays: the gap and influence formulas, the filters, the K range, the clustering,
the within-cluster order and Precision@10."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_rationality.discover.clusters import cluster_regions, k_range, region_distances
from vlm_rationality.discover.identify import (
    identify,
    influence,
    performance_gaps,
    precision_at,
    rank_regions,
    top_regions,
    zero_shot_scores,
)


def test_the_gap_weighs_each_class_by_how_balanced_present_and_absent_are():
    # class 0: 4 images inside, all right; 4 outside, 1 right -> w 1, gap 0.75
    # class 1: 2 images inside, none right; 6 outside, all right -> w 2·2/8 = 0.5, gap -0.5
    labels = np.array([0] * 8 + [1] * 8)
    predictions = np.array([0, 0, 0, 0, 0, 1, 1, 1] + [0, 0, 1, 1, 1, 1, 1, 1])
    inside = np.array([True] * 4 + [False] * 4 + [True] * 2 + [False] * 6)
    gaps = performance_gaps(labels, predictions, inside)
    assert gaps == pytest.approx({0: 0.75, 1: -0.5})
    assert sum(abs(g) for g in gaps.values()) == pytest.approx(1.25)
    assert performance_gaps(labels, predictions, labels == 0) == {}  # class 0 has no image outside: no gap


def two_region_images(labels, predictions, cluster_of_top_region):
    """Each image has two regions (2i, 2i+1); the predicted class scores highest on region 2i when
    `cluster_of_top_region[i]`, which is the region put in cluster 1."""
    n = len(labels)
    image_scores = np.eye(3)[predictions] * 0.8 + 0.1
    region_scores = np.full((2 * n, 3), 0.1)
    in_cluster = np.zeros(2 * n, dtype=bool)
    for i, (p, top_inside) in enumerate(zip(predictions, cluster_of_top_region)):
        in_cluster[2 * i] = True  # every image is in the cluster through its first region
        region_scores[2 * i if top_inside else 2 * i + 1, p] = 0.9
    return image_scores, region_scores, in_cluster, np.repeat(np.arange(n), 2)


def test_influence_is_the_share_of_errors_whose_top_region_lies_in_the_cluster_for_negative_gap_classes():
    labels = np.array([1, 1, 1, 1, 2, 2])
    predictions = np.array([0, 0, 0, 1, 0, 2])  # class 1: three errors; class 2: one error
    top_inside = [True, True, False, True, True, True]
    image_scores, region_scores, in_cluster, region_image = two_region_images(labels, predictions, top_inside)
    top = top_regions(image_scores, region_scores, region_image)
    assert influence(in_cluster, {1: -0.5, 2: -0.1}, labels, predictions, top, region_image) == pytest.approx(
        1.0
    )  # class 2: 1 of 1
    assert influence(in_cluster, {1: -0.5, 2: 0.3}, labels, predictions, top, region_image) == pytest.approx(2 / 3)
    assert influence(in_cluster, {1: 0.5, 2: 0.3}, labels, predictions, top, region_image) == -np.inf
    single = np.arange(6)  # one region per image: no image counts
    assert (
        influence(
            in_cluster[::2],
            {1: -0.5},
            labels,
            predictions,
            top_regions(image_scores, region_scores[::2], single),
            single,
        )
        == -np.inf
    )


def test_clusters_with_same_sign_gaps_or_low_influence_are_not_candidates_and_candidates_rank_by_gap():
    # 8 images of 2 classes, two regions each. Cluster 0: the "spurious" region: in every class-0 image (all right)
    # and in two class-1 images (both mispredicted as 0, their top region for class 0 in the cluster).
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    predictions = np.array([0, 0, 0, 1, 0, 0, 1, 1])
    region_image = np.repeat(np.arange(8), 2)
    clusters = np.ones(16, dtype=int)  # cluster 1: the object regions
    clusters[[0, 2, 4, 8, 10]] = 0  # first region of images 0, 1, 2 (class 0) and 4, 5 (class 1)
    clusters[[13, 15]] = 2  # second region of images 6, 7: class 1, right -> only a positive gap
    image_scores = np.eye(2)[predictions] * 0.8 + 0.1
    region_scores = np.full((16, 2), 0.5)
    region_scores[[8, 10], 0] = 0.9  # the mispredicted class-1 images' top region for class 0 is in cluster 0
    evidence = identify(clusters, labels, image_scores, region_scores, region_image)
    by_cluster = {e.cluster: e for e in evidence}
    spurious = by_cluster[0]
    # class 0: 3 inside all right, 1 outside wrong -> w 0.5, gap 0.5;
    # class 1: 2 inside none right, 2 outside right -> -1
    assert spurious.gaps == pytest.approx({0: 0.5, 1: -1.0}) and spurious.gap == pytest.approx(1.5)
    assert spurious.influence == pytest.approx(1.0) and spurious.candidate and spurious.tied_class == 0
    assert not by_cluster[2].both_signs and not by_cluster[2].candidate  # gaps of one sign
    assert [e.cluster for e in evidence][0] == 0
    low = identify(
        clusters,
        labels,
        image_scores,
        np.where(np.arange(16)[:, None] % 2 == 1, 0.95, 0.05).repeat(2, axis=1),
        region_image,
    )
    assert not {e.cluster: e for e in low}[0].candidate  # the errors' top regions lie elsewhere: H = 0 < 0.25


def test_the_k_range_and_a_clustering_of_separated_groups():
    assert k_range(3) == range(6, 15)
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4]
    points = np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(40, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    distances = region_distances(points)
    assert np.all(np.diag(distances) == 0) and distances.min() >= 0 and distances.max() <= 1
    clustering = cluster_regions(points, range(2, 8))
    assert clustering.k == 4 and clustering.silhouette > 0.8
    assert all(len(set(clustering.labels[10 * g : 10 * g + 10])) == 1 for g in range(4))
    assert clustering.labels[clustering.medoids].tolist() == list(range(4))
    with pytest.raises(ValueError, match="12 regions cannot form 14 clusters"):
        cluster_regions(points[:12], k_range(3))


def test_a_clustering_that_separates_nothing_is_kept_with_its_silhouette():
    points = np.tile(np.eye(4)[:1], (12, 1))  # every region alike: no silhouette is positive
    clustering = cluster_regions(points, range(2, 4))
    assert clustering.k in (2, 3) and clustering.silhouette <= 0


def test_regions_rank_by_similarity_to_the_medoid_and_precision_divides_by_ten():
    embeddings = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1], [0.96, 0.28]])
    clusters = np.array([0, 0, 0, 1, 0])
    assert rank_regions(embeddings, clusters, np.array([0, 3]), 0).tolist() == [0, 4, 2, 1]
    assert precision_at(np.array([5, 5, 1, 5, 5]), spurious=5) == pytest.approx(0.4)  # a cluster of five: 4 / 10
    assert precision_at(np.array([5] * 12), spurious=5) == 1.0
    assert precision_at(None, spurious=5) == 0.0  # no cluster survived


def test_the_random_baseline_expects_the_spurious_share_as_ten_random_regions_find_it():
    from vlm_rationality.discover.identify import random_precision_at

    rng = np.random.default_rng(0)
    shows = rng.uniform(size=300) < 0.13  # a spurious share of about 13%
    draws = [precision_at(rng.choice(shows, 10, replace=False).astype(int), 1) for _ in range(20000)]
    assert random_precision_at(shows) == pytest.approx(shows.mean())
    assert np.mean(draws) == pytest.approx(shows.mean(), abs=0.003)  # what drawing regions gives, on average
    few = shows[:6]  # fewer than ten regions: precision still divides by ten
    assert random_precision_at(few) == pytest.approx(few.mean() * 0.6) and random_precision_at(np.zeros(0)) == 0.0


def test_george_reads_the_failing_subclass_of_a_class_and_the_class_its_images_are_taken_for():
    from vlm_rationality.discover.george import MIN_SLICE, george_slice

    # Five directions: two objects, a shared background, a sticker, a second background. Class 0 has 24 images, its
    # object and one more region each: 12 with the sticker (all mistaken for class 1), 12 with the background (right).
    # Class 1 has 24 images, its object and the second background, all right.
    rng = np.random.default_rng(0)
    directions = np.eye(5)

    def region(d: int) -> np.ndarray:
        v = directions[d] + rng.normal(0, 0.01, 5)
        return v / np.linalg.norm(v)

    embeddings, region_image, labels, predictions = [], [], [], []
    for image in range(48):
        y = int(image >= 24)
        sticker = y == 0 and image % 2 == 0
        for d in (y, 3 if sticker else 2 if y == 0 else 4):
            embeddings.append(region(d))
            region_image.append(image)
        labels.append(y)
        predictions.append(1 if sticker else y)
    embeddings, region_image = np.array(embeddings), np.array(region_image)
    labels, predictions = np.array(labels), np.array(predictions)
    found = george_slice(embeddings, region_image, labels, predictions)
    sticker_regions = [r for r in range(len(embeddings)) if embeddings[r].argmax() == 3]
    assert found is not None and found.label == 0 and found.accuracy == 0.0 and found.tied_class == 1
    assert sorted(found.ranked.tolist()) == sticker_regions  # the sticker's regions, and only they
    similarity = embeddings[found.ranked] @ embeddings[found.ranked[0]]
    assert np.all(np.diff(similarity) <= 1e-12) and len(found.ranked) >= MIN_SLICE  # by similarity to the medoid
    # all right: the slice is the lowest-accuracy cluster still (accuracy 1), tied to no class
    right = george_slice(embeddings, region_image, labels, labels)
    assert right is not None and right.accuracy == 1.0 and right.tied_class is None
    # no class with more regions than George's largest K: no slice
    assert george_slice(embeddings[:8], region_image[:8], labels[:4], predictions[:4]) is None


def test_zero_shot_scores_soften_cosines_by_007():
    text = np.array([[2**-0.5, 2**-0.5], [0.0, 1.0]])
    scores = zero_shot_scores(np.array([[1.0, 0.0]]), text)
    assert scores.sum() == pytest.approx(1.0)
    assert scores[0, 0] == pytest.approx(1 / (1 + np.exp(-(2**-0.5) / 0.07)))


def test_discovery_on_a_real_shard_gives_regions_true_to_the_masks_and_names_the_dataset_when_too_few(tmp_path):
    import torch

    from tests import fixtures
    from vlm_rationality.data.synthetic import SyntheticSpec, generate
    from vlm_rationality.discover.run import BACKGROUND, OBJECT, discover
    from vlm_rationality.models import build_classifier, build_model

    spec = SyntheticSpec(image_size=32, num_classes=2, num_textures=2)
    samples = list(generate(spec, "test", 12))
    background = {"background": [s.extra["background"] for s in samples]}
    shard = fixtures.prepared_shard(tmp_path / "shard-0000.parquet", samples, extra=background)
    torch.manual_seed(0)
    classifier = build_classifier(
        build_model({"adapter": "open_clip", "arch": "tiny-vit-32"}),
        "prompt",
        ["a photo of a circle", "a photo of a square"],
    ).eval()
    settings = {"background_boxes": 3, "box_fraction": 0.25, "grid": 3, "seed": 0}
    row, regions, clusters, crops = discover(
        classifier, [str(shard)], {"tied": [0, 1]}, settings, torch.device("cpu"), 8, "tiny"
    )
    assert row["n_images"] == 12 and row["n_regions"] == len(regions["kind"]) and row["k"] in k_range(2)
    assert [regions["cluster"][m] for m in clusters["medoids"]] == list(range(row["k"]))  # each medoid in its cluster
    assert clusters["ranked"][:1] == ([row["top_cluster"]] if row["top_cluster"] is not None else [])
    assert len(clusters["ranked"]) == row["n_candidates"]
    # Stage 2's assignment of the same split to the nearest medoid gives back the clustering itself
    from vlm_rationality.artefacts import write_discovery
    from vlm_rationality.discover.assign import assign_regions

    found = tmp_path / "found.parquet"
    write_discovery(found, regions, row, clusters, {"dataset": "tiny"}, "h")
    assigned, summary, ranked = assign_regions(
        classifier, [str(shard)], str(found), [str(shard)], settings, torch.device("cpu"), 8, "tiny"
    )
    assert assigned["cluster"] == regions["cluster"] and ranked == clusters["ranked"]
    assert assigned["box"] == regions["box"] and summary["n_top_cluster"] == row["top_cluster_size"]
    masks = {s.sample_id: s.mask for s in samples}
    for sample_id, kind, feature, (x0, y0, x1, y1) in zip(
        regions["sample_id"], regions["kind"], regions["feature"], regions["box"]
    ):
        mask = masks[sample_id]
        sample = next(s for s in samples if s.sample_id == sample_id)
        if kind == OBJECT:
            assert mask[y0:y1, x0:x1].sum() == mask.sum() and feature == sample.label
        else:
            assert kind == BACKGROUND and not mask[y0:y1, x0:x1].any() and feature == sample.extra["background"]
    ranked = sorted(r for r in regions["rank"] if r >= 0)
    assert ranked == list(range(row["top_cluster_size"])) and len(crops) == min(20, row["top_cluster_size"])
    assert row["precision_at_10"] is None or 0 <= row["precision_at_10"] <= 1
    assert 0 <= row["george_precision_at_10"] <= 1 and row["george_class"] in (0, 1)  # George's slice, same regions
    assert row["n_grid_images"] == 0 and row["n_regions"] == 12 + 3 * 12 - row["n_background_short"]
    maskless = tmp_path / "maskless" / "shard-0000.parquet"  # no object known: a 3 x 3 grid per image
    maskless.parent.mkdir()
    fixtures.prepared_shard(maskless, samples, masks=np.zeros((12, 32, 32), bool))
    row, regions, _, _ = discover(classifier, [str(maskless)], None, settings, torch.device("cpu"), 8, "tiny")
    assert row["n_grid_images"] == 12 and set(regions["kind"]) == {"grid"} and row["n_regions"] == 12 * 9
    assert row["precision_at_10"] is None and row["george_precision_at_10"] is None  # the dataset knows no cue
    few = tmp_path / "few" / "shard-0000.parquet"  # 4 images, their object boxes only: 4 regions, K up to 9
    few.parent.mkdir()
    fixtures.prepared_shard(few, samples[:4])
    with pytest.raises(ValueError, match="dataset tiny: 4 regions cannot form 9 clusters"):
        discover(
            classifier,
            [str(few)],
            {"tied": [0, 1]},
            {**settings, "background_boxes": 0},
            torch.device("cpu"),
            8,
            "tiny",
        )


def test_the_region_grid_names_each_region_by_what_the_dataset_calls_it():
    from vlm_rationality.data.synthetic import SyntheticDataset
    from vlm_rationality.report.discovery import region_caption

    dataset = SyntheticDataset({"test": {"size": 4}}, image_size=32, num_classes=3, num_textures=4)
    names = {"classes": dataset.class_names, "backgrounds": dataset.background_names()}
    assert [region_caption("object", 0, names), region_caption("background", 1, names)] == [
        "object circle",
        "background checks",
    ]
    assert region_caption("background", 1, {"classes": ["a"], "backgrounds": None}) == "background 1"  # unnamed
    assert region_caption("grid", None, names) == "grid"


def test_a_sample_of_the_regions_is_clustered_and_every_region_joins_its_nearest_medoid(caplog):
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:4]
    points = np.repeat(centres, 50, axis=0) + 0.05 * rng.normal(size=(200, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    full = cluster_regions(points, range(2, 8))
    caplog.clear()  # the full clustering's lines, where an earlier test (the CLI's main) left the logger at INFO
    with caplog.at_level("INFO", logger="vlm_rationality.discover.clusters"):
        sampled = cluster_regions(points, range(2, 8), seed=3, max_regions=60)
    assert "(60 regions)" in caplog.text and "(200 regions)" not in caplog.text  # K-Medoids saw the sample only
    again = cluster_regions(points, range(2, 8), seed=3, max_regions=60)  # seeded: the same sample and medoids
    assert np.array_equal(sampled.labels, again.labels) and np.array_equal(sampled.medoids, again.medoids)
    assert sampled.k == full.k == 4 and len(sampled.labels) == 200 and sampled.medoids.max() < 200
    nearest = np.argmax(points @ points[sampled.medoids].T, axis=1)
    assert np.array_equal(sampled.labels, nearest)
    assert sampled.labels[sampled.medoids].tolist() == list(range(4))
    # the same partition of the 200 regions as clustering them all
    assert len({(a, b) for a, b in zip(full.labels, sampled.labels)}) == 4
    assert cluster_regions(points, range(2, 8), max_regions=500).labels.tolist() == full.labels.tolist()  # no sample


def test_a_sticker_is_one_of_its_images_regions_and_the_cue_discovery_looks_for():
    from vlm_rationality.data.synthetic import SyntheticSpec, generate
    from vlm_rationality.discover.run import BACKGROUND, OBJECT, STICKER, image_regions, shows_cue

    settings = {"background_boxes": 3, "box_fraction": 0.25, "grid": 3, "seed": 0}
    samples = [s for s in generate(SyntheticSpec(cue="sticker"), "test", 40) if s.extra["cue_mask"].any()]
    assert samples
    for s in samples:
        sticker = s.extra["cue_mask"]
        regions = image_regions(s.mask, s.sample_id, settings, sticker)
        kinds = [kind for _, kind in regions]
        assert kinds[0] == OBJECT and kinds[-1] == STICKER and set(kinds[1:-1]) <= {BACKGROUND}
        x0, y0, x1, y1 = regions[-1][0]
        assert sticker[y0:y1, x0:x1].all() and sticker.sum() == (x1 - x0) * (y1 - y0)  # the sticker's exact box
        for (x0, y0, x1, y1), kind in regions:
            if kind == BACKGROUND:  # a background square shows neither the object nor the sticker
                assert not (s.mask | sticker)[y0:y1, x0:x1].any()
        # without its sticker, the image's regions are what they were (the same seeded background squares)
        plain = image_regions(s.mask, s.sample_id, settings)
        assert [kind for _, kind in plain] == [OBJECT] + [BACKGROUND] * (len(plain) - 1)
    # the cue discovery looks for: the sticker, where the top cluster is tied to the sticker's class
    assert shows_cue(STICKER, None, {"sticker": 2}, 2) and not shows_cue(STICKER, None, {"sticker": 2}, 1)
    assert shows_cue(BACKGROUND, 5, {"tied": [5, 6]}, 0) and not shows_cue(STICKER, None, {"tied": [5, 6]}, 0)
    assert not shows_cue(BACKGROUND, 5, None, 0) and not shows_cue(BACKGROUND, 5, {"tied": [5, 6]}, None)
