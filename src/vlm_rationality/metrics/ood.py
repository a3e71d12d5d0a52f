"""Out-of-distribution detection from stored logits: scores, AUROC and FPR at 95% TPR.

Higher scores mean "in distribution", and in-distribution is the positive class: AUROC is the probability that
an ID sample outscores an OOD one (ties count half), FPR@95 the share of OOD samples at or above the score that
keeps 95% of ID samples.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.metrics import roc_auc_score, roc_curve


def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability (Hendrycks & Gimpel)."""
    return softmax(np.asarray(logits, np.float64), axis=1).max(axis=1)


def max_logit(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits, np.float64).max(axis=1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T·logsumexp(logits / T) (Liu et al.): higher for ID."""
    return temperature * logsumexp(np.asarray(logits, np.float64) / temperature, axis=1)


def mcm(cosines: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Maximum concept matching (Ming et al.): max softmax of an image's cosine similarities to the class prompts,
    / T. From the cosines themselves (predict/run.py), for every method: a linear head's logits are no scaled
    cosines (rows of norm 14-19 and biases on the default run's LP), so dividing them by the logit scale would not
    give MCM."""
    return softmax(np.asarray(cosines, np.float64) / temperature, axis=1).max(axis=1)


SCORES = {"msp": msp, "max_logit": max_logit, "energy": energy}


def _labelled(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)])
    return np.r_[np.ones(len(id_scores), bool), np.zeros(len(ood_scores), bool)], scores


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """scikit-learn's AUROC with ID positive (ties at half); NaN where either side is empty."""
    if len(id_scores) == 0 or len(ood_scores) == 0:
        return float("nan")
    return float(roc_auc_score(*_labelled(id_scores, ood_scores)))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Share of OOD samples scoring at or above the highest threshold that keeps `tpr` of the ID samples: the first
    point of scikit-learn's ROC curve (every threshold kept) whose TPR reaches `tpr`."""
    if len(id_scores) == 0 or len(ood_scores) == 0:
        return float("nan")
    fpr, tprs, _ = roc_curve(*_labelled(id_scores, ood_scores), drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])
