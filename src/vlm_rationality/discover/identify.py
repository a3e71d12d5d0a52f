"""Which region cluster a classifier's errors follow: RaVL's performance gap, influence score and ranking.

Definitions follow the paper (Section 3.1) and the official code (`ravl/discover_utils.py`, `ravl/discover.py`):
an image is *in* cluster c when at least one of its regions is. Per class y with images both in and out of c, the
gap is w_y (acc_in − acc_out) with w_y = 2 min(n_in, n_out) / (n_in + n_out), and G_c = Σ_y |gap_y|. The influence
H_c is, over the mispredicted images of the classes with a negative gap that have more than one region, the share
whose region scoring highest for the predicted class lies in c — the maximum over those classes. A cluster is a
candidate when H_c ≥ 0.25 and its gaps take both signs; candidates are ranked by G_c.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_INFLUENCE = 0.25
TEMPERATURE = 0.07  # the zero-shot scores' softmax temperature (CLIP's)


def zero_shot_scores(embeddings: np.ndarray, text: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """Softmax over classes of cosine similarity / temperature, for unit-norm image or region embeddings."""
    logits = embeddings @ text.T / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    scores = np.exp(logits)
    return scores / scores.sum(axis=1, keepdims=True)


def performance_gaps(labels: np.ndarray, predictions: np.ndarray, inside: np.ndarray) -> dict[int, float]:
    """{class: weighted accuracy gap, images inside the cluster vs outside} for the classes of the images inside
    that also have images outside."""
    gaps = {}
    for y in sorted(set(labels[inside].tolist())):
        n_in, n_out = int(np.sum(inside & (labels == y))), int(np.sum(~inside & (labels == y)))
        if n_out == 0:
            continue
        accuracy_in = float(np.mean(predictions[inside & (labels == y)] == y))
        accuracy_out = float(np.mean(predictions[~inside & (labels == y)] == y))
        gaps[y] = 2 * min(n_in, n_out) / (n_in + n_out) * (accuracy_in - accuracy_out)
    return gaps


def top_regions(image_scores: np.ndarray, region_scores: np.ndarray, region_image: np.ndarray) -> np.ndarray:
    """Per image, its region scoring highest for the image's predicted class (the first of equals); -1 for an image
    with one region or none, which the influence leaves out. It does not depend on the cluster: computed once."""
    predictions = image_scores.argmax(axis=1)
    score = region_scores[np.arange(len(region_image)), predictions[region_image]]
    order = np.lexsort((np.arange(len(score)), -score, region_image))
    first = order[np.r_[True, region_image[order][1:] != region_image[order][:-1]]] if len(order) else order
    top = np.full(len(image_scores), -1)
    top[region_image[first]] = first
    top[np.bincount(region_image, minlength=len(image_scores)) <= 1] = -1
    return top


def influence(
    in_cluster: np.ndarray,
    gaps: dict[int, float],
    labels: np.ndarray,
    predictions: np.ndarray,
    top: np.ndarray,
    region_image: np.ndarray,
) -> float:
    """H_c (−inf where no mispredicted image of a negative-gap class has more than one region); `in_cluster` and
    `region_image` are per region, `predictions` and `top` (top_regions) per image."""
    images = np.unique(region_image[in_cluster])
    negative = np.array([gaps.get(int(y), 0.0) < 0 for y in labels[images]], dtype=bool)
    images = images[(top[images] >= 0) & (predictions[images] != labels[images]) & negative]
    hits = in_cluster[top[images]]
    return max((float(hits[labels[images] == y].mean()) for y in np.unique(labels[images])), default=-np.inf)


@dataclass(frozen=True)
class ClusterEvidence:
    cluster: int
    gaps: dict[int, float] = field(repr=False)
    gap: float  # G_c
    influence: float  # H_c
    both_signs: bool

    @property
    def candidate(self) -> bool:
        return self.both_signs and self.influence >= MIN_INFLUENCE

    @property
    def tied_class(self) -> int | None:
        """The class whose accuracy gains most when the cluster is present: the one the feature is tied to."""
        return max(self.gaps, key=lambda y: (self.gaps[y], -y)) if self.gaps else None


def identify(
    clusters: np.ndarray,
    labels: np.ndarray,
    image_scores: np.ndarray,
    region_scores: np.ndarray,
    region_image: np.ndarray,
) -> list[ClusterEvidence]:
    """The evidence of every cluster, candidates first by decreasing G_c, then the rest by decreasing G_c."""
    predictions = image_scores.argmax(axis=1)
    top = top_regions(image_scores, region_scores, region_image)
    evidence = []
    for c in np.unique(clusters):
        in_cluster = clusters == c
        inside = np.zeros(len(labels), dtype=bool)
        inside[region_image[in_cluster]] = True
        gaps = performance_gaps(labels, predictions, inside)
        evidence.append(
            ClusterEvidence(
                int(c),
                gaps,
                float(sum(abs(g) for g in gaps.values())),
                influence(in_cluster, gaps, labels, predictions, top, region_image),
                any(g > 0 for g in gaps.values()) and any(g < 0 for g in gaps.values()),
            )
        )
    return sorted(evidence, key=lambda e: (not e.candidate, -e.gap, e.cluster))


def rank_regions(embeddings: np.ndarray, clusters: np.ndarray, medoids: np.ndarray, cluster: int) -> np.ndarray:
    """The regions of `cluster` by decreasing similarity to its medoid (ties: lower region index first)."""
    members = np.flatnonzero(clusters == cluster)
    similarity = embeddings[members] @ embeddings[medoids[cluster]]
    return members[np.lexsort((members, -similarity))]


def precision_at(ranked_region_labels: np.ndarray | None, spurious: int, k: int = 10) -> float:
    """The share of the top k ranked regions whose label is the spurious feature, divided by k even when the cluster
    is smaller; 0 when no cluster survived (None)."""
    if ranked_region_labels is None:
        return 0.0
    return float(np.sum(np.asarray(ranked_region_labels[:k]) == spurious)) / k


def random_precision_at(shows_spurious: np.ndarray, k: int = 10) -> float:
    """RaVL's Random baseline: the expected Precision@k of k regions drawn without replacement from all of them,
    the spurious share (times min(n, k) / k, as `precision_at` divides by k) — what a ranking must beat."""
    shows = np.asarray(shows_spurious, bool)
    return float(shows.mean()) * min(len(shows), k) / k if len(shows) else 0.0
