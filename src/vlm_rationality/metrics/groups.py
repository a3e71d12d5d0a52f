"""Worst-group accuracy: the accuracy of the weakest (class, cue present/absent) group.

A spurious cue tied to each class in training (the synthetic benchmark's background texture) splits every class
into the images that show their class's cue and those that do not; a local cue tied to one class (the sticker)
splits every class into the images with and without it. A model that leans on the cue does well on the
first and badly on the second; the worst group's accuracy says how badly, where the overall accuracy averages it
away (RaVL and group-robustness work report both).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

NO_GROUPS: dict[str, Any] = {
    "acc_worst_group": None,
    "worst_group_class": None,
    "worst_group_cue_present": None,
    "n_worst_group": 0,
    "n_groups": 0,
}  # a dataset with no tied cue


def cue_present(labels: np.ndarray, backgrounds: np.ndarray, tied: Sequence[int]) -> np.ndarray:
    """Whether each image shows the background its class is tied to."""
    return backgrounds == np.asarray(tied)[labels]


def worst_group(correct: np.ndarray, labels: np.ndarray, present: np.ndarray) -> dict[str, Any]:
    """The lowest accuracy over the non-empty (class, cue present) groups, which group it is and its size (the
    first of equals: lower class, cue absent before present)."""
    worst = dict(NO_GROUPS)
    for y in np.unique(labels):
        for cue in (False, True):
            members = (labels == y) & (present == cue)
            if not members.any():
                continue
            worst["n_groups"] += 1
            accuracy = float(correct[members].mean())
            if worst["acc_worst_group"] is None or accuracy < worst["acc_worst_group"]:
                worst.update(
                    acc_worst_group=accuracy,
                    worst_group_class=int(y),
                    worst_group_cue_present=cue,
                    n_worst_group=int(members.sum()),
                )
    return worst


NO_STICKER: dict[str, Any] = {"epsilon_1": None, "epsilon_2": None, "epsilon_2_class": None}
NO_REGION: dict[str, Any] = {"region_accuracy": None, "region_acc_worst_group": None}


def region_accuracy(labels: np.ndarray, object_pred: np.ndarray, present: np.ndarray) -> dict[str, Any]:
    """RaVL's region-level accuracy, overall and in the worst (class, cue present) group: the object classified
    without its context. RaVL classifies the object's box crop; here the object alone is the twins job's (every
    background pixel, the sticker's included, painted the background's mean colour, at full size), so the groups
    still split by whether the image carried the cue and differ only by what the classifier made of the object."""
    correct = np.asarray(object_pred) == np.asarray(labels)  # NO_PREDICTION (-1) never equals a label
    if not len(correct):
        return dict(NO_REGION)
    worst = worst_group(correct, np.asarray(labels), np.asarray(present, bool))
    return {"region_accuracy": float(correct.mean()), "region_acc_worst_group": worst["acc_worst_group"]}


def sticker_effect(correct: np.ndarray, labels: np.ndarray, present: np.ndarray, tied_class: int) -> dict[str, Any]:
    """RaVL's test of whether a model learned a local feature tied to one class: ε1, the tied class's accuracy with
    the feature minus without it, and ε2, the largest accuracy without it minus with it over the other classes
    (and which class); RaVL keeps a setting where both exceed 10 points. NaN where a group is empty."""

    def gap(members: np.ndarray) -> float:
        with_cue, without = members & present, members & ~present
        if not with_cue.any() or not without.any():
            return float("nan")
        return float(correct[with_cue].mean() - correct[without].mean())

    epsilon_1 = gap(labels == tied_class)
    others = {int(y): -gap(labels == y) for y in np.unique(labels) if y != tied_class}
    finite = {y: value for y, value in others.items() if not np.isnan(value)}
    worst = max(finite, key=finite.get) if finite else None
    return {
        "epsilon_1": epsilon_1,
        "epsilon_2": finite[worst] if worst is not None else float("nan"),
        "epsilon_2_class": worst,
    }


def cramers_v(labels: np.ndarray, present: np.ndarray) -> float:
    """Cramér's V of the (class x cue present) contingency table: 0 where the cue is independent of the class, 1
    where it names the class it is tied to (how RaVL states the strength of a tie). For a binary cue it is the
    phi coefficient, √(χ² / n)."""
    labels, present = np.asarray(labels), np.asarray(present, bool)
    classes = np.unique(labels)
    table = np.array([[np.sum((labels == y) & (present == cue)) for cue in (False, True)] for y in classes], float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    if (expected == 0).any() or min(table.shape) < 2:
        return float("nan")
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))
