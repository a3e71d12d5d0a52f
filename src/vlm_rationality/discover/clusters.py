"""Clustering region embeddings as RaVL's discovery does: K-Medoids on cosine distance, K by silhouette.

RaVL (Varma et al., NeurIPS 2024; official code `ravl/discover.py`) clusters the unit-norm region embeddings with
distance clip(1 − E·Eᵀ, 0, 1) and tries K from 2|Y| to 5|Y| − 1, keeping the K of the best silhouette. The official
code starts its search at silhouette 0 and so fails when no K reaches a positive one; here the best K is kept
whatever its sign and its silhouette is returned, so a caller can report a clustering that separates nothing.
The official code initialises with k-medoids++ (scikit-learn-extra); here FasterPAM starts from seeded random
medoids: on 12,000 regions it is twelve times faster than the BUILD initialisation for a loss within 0.1%.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # int [R]: the cluster of each region
    medoids: np.ndarray  # int [K]: the region index of each cluster's medoid
    k: int
    silhouette: float  # of the chosen K; ≤ 0 when no K separates the regions


def k_range(num_classes: int) -> range:
    """The cluster counts RaVL tries: 2|Y| … 5|Y| − 1."""
    return range(2 * num_classes, 5 * num_classes)


def region_distances(embeddings: np.ndarray) -> np.ndarray:
    """clip(1 − E·Eᵀ, 0, 1) with a zero diagonal, for unit-norm rows of `embeddings`."""
    e = np.asarray(embeddings, dtype=np.float64)
    distances = np.clip(1.0 - e @ e.T, 0.0, 1.0)
    np.fill_diagonal(distances, 0.0)
    return distances


def cluster_regions(
    embeddings: np.ndarray, ks: range | list[int], seed: int = 0, max_regions: int | None = None
) -> Clustering:
    """K-Medoids (FasterPAM from seeded random medoids, one thread: reproducible) for every K in `ks`; the K with the
    best silhouette (the first of equals) wins. Raises ValueError when there are too few regions for the largest K.

    The dense distance matrix is 8·R² bytes (1.1 GB at the 11,600 regions of 3,000 images with three background
    squares each). With `max_regions`, K-Medoids and the silhouette run on a seeded subsample of that many regions
    (128 MB at 4,000) and every region then joins its nearest medoid."""
    e = np.asarray(embeddings, dtype=np.float64)
    n = len(e)
    sample = (
        np.sort(np.random.default_rng(seed).choice(n, max_regions, replace=False))
        if max_regions is not None and n > max_regions
        else np.arange(n)
    )
    best = _best_k(e[sample], ks, seed)
    if len(sample) == n:
        return best
    medoids = sample[best.medoids]
    labels = np.argmax(e @ e[medoids].T, axis=1)  # the nearest medoid: the smallest 1 − cosine
    log.info("%d regions clustered as a sample of %d, then assigned to the nearest medoid", n, len(sample))
    return Clustering(labels.astype(np.int64), medoids, best.k, best.silhouette)


def _best_k(embeddings: np.ndarray, ks: range | list[int], seed: int) -> Clustering:
    import kmedoids
    from sklearn.metrics import silhouette_score

    distances = region_distances(embeddings)
    n = len(distances)
    if n <= max(ks):
        raise ValueError(
            f"{n} regions cannot form {max(ks)} clusters (K runs {min(ks)}…{max(ks)}); give more images or regions"
        )
    best: Clustering | None = None
    for k in ks:
        result = kmedoids.fasterpam(distances, k, init="random", random_state=seed, n_cpu=1)
        labels = np.asarray(result.labels, dtype=np.int64)
        score = float(silhouette_score(distances, labels, metric="precomputed")) if len(set(labels)) > 1 else -1.0
        log.info("K = %d: silhouette %.4f (%d regions)", k, score, n)
        if best is None or score > best.silhouette:
            best = Clustering(labels, np.asarray(result.medoids, dtype=np.int64), k, score)
    assert best is not None
    return best
