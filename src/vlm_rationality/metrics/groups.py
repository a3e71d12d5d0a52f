"""Worst-group accuracy: the accuracy of the weakest (class, cue present/absent) group.

A spurious cue tied to each class in training (the synthetic benchmark's background texture) splits every class
into the images that show their class's cue and those that do not. A model that leans on the cue does well on the
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
