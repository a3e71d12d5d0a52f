"""An image-level discovery baseline beside RaVL: George (Sohoni et al., NeurIPS 2020), adapted to regions as RaVL's
comparison adapts it (Varma et al., Section 3.3: the same regions, their embeddings and zero-shot scores as input).

George finds hidden subclasses by clustering each class's examples in the classifier's feature space and reads the
subclass the classifier fails most as the failure mode. Here, per ground-truth class, the regions of that class's
images are clustered as RaVL clusters (K-Medoids on cosine distance, K by silhouette; George's UMAP projection is
left out, so that every method sees the same embeddings); each cluster's accuracy is the zero-shot accuracy of the
images that have a region in it. The slice is the cluster of lowest accuracy among those with at least ten regions
(the ones Precision@10 can fill); its regions are ranked by similarity to its medoid, as RaVL ranks its top cluster.
What George does not know is which class the feature is tied to: it is read as the class the slice's mispredicted
images are most often taken for (the class the shortcut pulls towards), so that Precision@10 asks George for the
right feature and the right class at once, as it asks RaVL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlm_rationality.discover.clusters import cluster_regions
from vlm_rationality.discover.identify import rank_regions

MIN_SLICE = 10  # regions: a smaller cluster cannot fill Precision@10, and its accuracy is a handful of images
SUBCLASSES = range(2, 11)  # George's search over the number of subclasses per class


@dataclass(frozen=True)
class Slice:
    """George's failure slice: its class, accuracy, pulled-towards class and regions in rank order."""

    label: int  # the ground-truth class whose regions it clusters
    accuracy: float  # zero-shot accuracy of the images with a region in it
    tied_class: int | None  # the commonest wrong prediction of those images (None if none is wrong)
    ranked: np.ndarray  # region indices, by decreasing similarity to the slice's medoid


def george_slice(
    embeddings: np.ndarray,
    region_image: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    seed: int = 0,
    max_regions: int | None = None,
) -> Slice | None:
    """The lowest-accuracy per-class cluster of at least MIN_SLICE regions (ties: the larger, then the lower class
    and cluster); None when no class has enough regions to cluster. `embeddings` and `region_image` are per region
    (unit-norm rows), `labels` and `predictions` per image."""
    region_label = labels[region_image]
    best: tuple[tuple, Slice] | None = None
    for y in np.unique(labels):
        members = np.flatnonzero(region_label == y)
        if len(members) <= max(SUBCLASSES):
            continue
        clustering = cluster_regions(embeddings[members], SUBCLASSES, seed, max_regions)
        for c in range(clustering.k):
            inside = members[clustering.labels == c]
            if len(inside) < MIN_SLICE:
                continue
            images = np.unique(region_image[inside])
            accuracy = float(np.mean(predictions[images] == y))
            key = (accuracy, -len(inside), int(y), c)
            if best is None or key < best[0]:
                wrong = predictions[images][predictions[images] != y]
                tied = int(np.bincount(wrong).argmax()) if len(wrong) else None
                order = rank_regions(embeddings[members], clustering.labels, clustering.medoids, c)
                best = key, Slice(int(y), accuracy, tied, members[order])
    return None if best is None else best[1]
