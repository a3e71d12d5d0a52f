"""Visual factors: along which factor do accuracy and the rationale break?

ImageNet-X's analysis (Idrissi et al., 2023), with the rationale beside the accuracy: for every factor, the
samples annotated with it (ImageNet-X's annotations, or the synthetic generator's own draws, data/synthetic.py),
their accuracy, the error ratio (their error ÷ the overall error: above 1, the factor hurts), and PT and IR at the
configured threshold; with counterfactual twins also the true rationale, PT* and PT*_cue, per factor. The row
`all` is every annotated sample; unannotated samples (ImageNet images ImageNet-X does not cover) are counted, in
no factor. Factor accuracy against overall accuracy across classifiers is read on probit axes with a Huber line
per factor (metrics/id_ood.py), one point per classifier.

A factor's samples are not a random draw of the classes: on ImageNet a factor is more frequent in some classes, so
an error ratio mixes the factor with its classes (the synthetic factors are drawn independently of the class).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np

from vlm_rationality.artefacts import HEATMAP_KEYS
from vlm_rationality.metrics.grounding import COLUMNS, CUE_COLUMNS, grounding
from vlm_rationality.metrics.rationality import rationality
from vlm_rationality.metrics.score import aligned_twins, twin_columns
from vlm_rationality.metrics.thresholds import stored_rma
from vlm_rationality.visual_factors import Factors

ALL = "all"
RATIONALE = ("prediction_trustworthiness", "inference_reliability")
TRUE = (*COLUMNS, *CUE_COLUMNS)


def _true_rationale(
    twins: dict[str, Any] | None, members: np.ndarray, agreement: float, iterations: int, seed: int
) -> dict[str, Any]:
    """PT*, IR* (and the cue's) of the member samples, from their twins' columns; None without twins."""
    if twins is None:
        return dict.fromkeys(f"{n}{s}" for n in TRUE for s in ("", "_ci_low", "_ci_high"))
    found = grounding(
        twins["label"][members],
        twins["pred"][members],
        twins["twin_pred"][members],
        twins["twin_same_class"][members],
        twins["alone_pred"][members],
        agreement,
        iterations,
        seed,
        twins["twin_cue_class"][members],
    )
    return {name: found[name] for name in found if name.startswith(TRUE)}


def _subset(annotations: Factors, order: np.ndarray) -> Factors:
    return Factors(annotations.annotated[order], {name: shows[order] for name, shows in annotations.shows.items()})


def factor_rows(
    stored: dict[tuple, dict[str, Any]],
    factors: dict[str, tuple[dict[str, int], Factors]],
    twins: dict[tuple, dict[str, Any]],
    threshold: float,
    agreement: float,
    iterations: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per (key, factor) with at least one sample, and the key's `all` row. `factors`: dataset -> (sample
    id -> its position in the annotations, the annotations)."""
    rows = []
    for key, found in stored.items():
        index, annotated = factors[key[0]]
        annotations = _subset(annotated, np.array([index[s] for s in found["sample_id"]], np.int64))
        mine = twins.get((key[0], key[2], key[3]))
        linked = aligned_twins(mine, found["sample_id"], "/".join(key)) if mine is not None else None
        correct = found["correct"]
        overall_error = 1.0 - float(correct[annotations.annotated].mean()) if annotations.annotated.any() else np.nan
        for factor, shows in [(ALL, annotations.annotated), *annotations.shows.items()]:
            members = shows & annotations.annotated
            if not members.any():
                continue
            result = rationality(correct[members], found["rma"][members], threshold, iterations, seed)
            error = 1.0 - float(correct[members].mean())
            row: dict[str, Any] = {
                **dict(zip(HEATMAP_KEYS, key)),
                "factor": factor,
                "n": int(members.sum()),
                "n_unannotated": int((~annotations.annotated).sum()),
                "error_ratio": error / overall_error if overall_error > 0 else None,
                "threshold": threshold,
            }
            for metric in ("accuracy", *RATIONALE):
                low, high = result.intervals[metric]
                row.update({metric: result.metrics[metric], f"{metric}_ci_low": low, f"{metric}_ci_high": high})
            row.update(_true_rationale(linked, members, agreement, iterations, seed))
            rows.append(row)
    return rows


def factors_table(
    heatmap_paths: Sequence[str | os.PathLike],
    twins_paths: Sequence[str | os.PathLike],
    annotate: dict[str, Callable[[list[str]], Factors]],
    undefined_rma: str,
    threshold: float,
    agreement: float,
    iterations: int,
    seed: int,
) -> list[dict[str, Any]]:
    """The factor rows of the clean heatmap files of the datasets in `annotate` (dataset -> a function of sample ids
    that reads their annotations: called once, for every sample any of its classifiers scored)."""
    stored = {
        key: found
        for key, found in stored_rma(heatmap_paths, undefined_rma, sample_ids=True).items()
        if key[0] in annotate and key[1] == "clean"
    }
    samples: dict[str, dict[str, int]] = defaultdict(dict)
    for key, found in stored.items():
        for sample in found["sample_id"]:
            samples[key[0]].setdefault(sample, len(samples[key[0]]))
    factors = {dataset: (index, annotate[dataset](list(index))) for dataset, index in samples.items()}
    for dataset, (index, found) in factors.items():
        if not found.annotated.any():
            raise ValueError(
                f"factors.datasets: none of the {len(index)} samples {dataset!r} scores has a factor annotation "
                "(ImageNet-X annotates the ILSVRC2012 validation images, by file name): point the dataset's "
                "factors_file at annotations of these images, or leave it out of factors.datasets"
            )
    return factor_rows(stored, factors, twin_columns(twins_paths), threshold, agreement, iterations, seed)
